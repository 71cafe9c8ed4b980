//! `http.send`: allow-list, private networks, proxies ignored, response cap; secrets and
//! crypto by handle.

use std::collections::HashMap;

use payloom_host::bindings::channel_types::{CreateRequest, Outcome};
use payloom_host::bindings::imports::payloom::plugin::http::{Error, Request};
use payloom_host::capabilities::crypto::Key;
use payloom_host::capabilities::http::{HttpClient, Outbound};
use payloom_host::{Call, CallContext, ChannelCall, Reply};
use payloom_reference_plugins::testing::FETCHER;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Serves `body` to every connection, once per request, on a loopback port.
async fn serve(body: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

pub(crate) async fn run(host: &TestHost, ctx: CallContext, data: &[(&str, &str)]) -> String {
    let mut req_payment = payment(100, "USD");
    req_payment.id = "pay_fetch".into();
    let call = ChannelCall::CreatePayment(CreateRequest {
        payment: req_payment,
        method_data: kvs(data),
        notify_url: String::new(),
    });
    let report = host
        .registry
        .call("fetcher", ctx, Call::Channel(call))
        .await
        .unwrap();
    match report.reply {
        Reply::Payment(Ok(resp)) => match resp.outcome {
            Outcome::Unknown(text) => text,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn allow_listed_loopback_is_reachable_only_when_private_networks_are_allowed() {
    let port = serve("hello").await;
    let url = format!("http://127.0.0.1:{port}/ping");
    let open = TestHost::builder()
        .config(|c| c.http_allow_private = true)
        .build();
    open.install(&FETCHER).await;
    assert_eq!(
        run(
            &open,
            CallContext::default(),
            &[("op", "fetch"), ("url", &url)]
        )
        .await,
        "status=200 body=hello"
    );

    let closed = TestHost::with(&[FETCHER]).await;
    let answer = run(
        &closed,
        CallContext::default(),
        &[("op", "fetch"), ("url", &url)],
    )
    .await;
    assert!(
        answer.contains("Denied") && answer.contains("private"),
        "{answer}"
    );
    // A name that resolves to loopback is refused on the resolved address.
    let by_name = format!("http://localhost:{port}/ping");
    let answer = run(
        &closed,
        CallContext::default(),
        &[("op", "fetch"), ("url", &by_name)],
    )
    .await;
    assert!(
        answer.contains("Denied") && answer.contains("blocked"),
        "{answer}"
    );
}

#[tokio::test]
async fn addresses_that_lead_inward_are_denied_before_any_connection() {
    // Each of these reaches a private, loopback or reserved network, some through IPv4
    // carried in IPv6. None is ever connected to: the host refuses them first.
    let inward = [
        "http://198.18.0.1/",
        "http://240.0.0.1/",
        "http://0.0.0.0/",
        "http://100.100.100.200/",
        "http://169.254.169.254/latest",
        "http://[64:ff9b::a00:5]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b:1::a00:5]/",
        "http://[2002:a00:5::1]/",
        "http://[2002:7f00:1::]/",
        "http://[fec0::1]/",
        "http://[::10.0.0.5]/",
        "http://[::ffff:10.0.0.5]/",
        "http://[fd00:ec2::254]/",
    ];
    let closed = HttpClient::new(false, 1024, 1024).unwrap();
    for url in inward {
        let request = Request {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: Some(1),
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        match closed.send(request, deadline).await {
            Err(Error::Denied(message)) => assert!(message.contains("private"), "{url}: {message}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    // Reserved blocks stay closed when private networks are allowed.
    let open = HttpClient::new(true, 1024, 1024).unwrap();
    for url in [
        "http://0.0.0.0/",
        "http://240.0.0.1/",
        "http://[64:ff9b::f000:1]/",
    ] {
        let request = Request {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: Some(1),
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        let answer = open.send(request, deadline).await;
        assert!(matches!(answer, Err(Error::Denied(_))), "{url}: {answer:?}");
    }
}

/// Set in the child process of [`proxy_variables_do_not_route_plugin_requests`].
const PROXY_CHILD: &str = "PAYLOOM_TEST_PROXY_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_do_not_route_plugin_requests() {
    // A proxy that answers every request itself, so a proxied one is told apart.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let proxied = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = proxied.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = proxy.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nproxied",
                )
                .await;
        }
    });
    // Proxy variables are read once per process, so the check runs in a child process.
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["http::plugin_requests_go_direct", "--exact", "--ignored"])
        .env(PROXY_CHILD, "1")
        .env("HTTP_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("ALL_PROXY", &proxy_url)
        .env("all_proxy", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("REQUEST_METHOD");
    let child = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let report = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success(), "{report}");
    assert!(
        report.contains("1 passed"),
        "the child ran the check: {report}"
    );
    assert_eq!(
        proxied.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no request went through the proxy"
    );
}

#[tokio::test]
#[ignore = "run by proxy_variables_do_not_route_plugin_requests with proxy variables set"]
async fn plugin_requests_go_direct() {
    if std::env::var_os(PROXY_CHILD).is_none() {
        return;
    }
    let port = serve("direct").await;
    let host = TestHost::builder()
        .config(|c| c.http_allow_private = true)
        .build();
    host.install(&FETCHER).await;
    let url = format!("http://127.0.0.1:{port}/");
    let answer = run(
        &host,
        CallContext::default(),
        &[("op", "fetch"), ("url", &url)],
    )
    .await;
    assert_eq!(answer, "status=200 body=direct");
}

#[tokio::test]
async fn hosts_off_the_allow_list_are_denied() {
    let host = TestHost::builder()
        .config(|c| c.http_allow_private = true)
        .build();
    host.install(&FETCHER).await;
    for url in [
        "http://10.0.0.1/",
        "https://127.0.0.1:1/",
        "http://evil.example/",
        "file:///etc/passwd",
    ] {
        let answer = run(
            &host,
            CallContext::default(),
            &[("op", "fetch"), ("url", url)],
        )
        .await;
        assert!(
            answer.contains("Denied") && answer.contains("allow-list"),
            "{url}: {answer}"
        );
    }
}

#[tokio::test]
async fn responses_over_the_cap_are_refused() {
    static BIG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body: &'static str = BIG.get_or_init(|| "x".repeat(64 * 1024));
    let port = serve(body).await;
    let host = TestHost::builder()
        .config(|c| {
            c.http_allow_private = true;
            c.bytes.http_response_max = 16 * 1024;
        })
        .build();
    host.install(&FETCHER).await;
    let answer = run(
        &host,
        CallContext::default(),
        &[
            ("op", "fetch"),
            ("url", &format!("http://127.0.0.1:{port}/")),
        ],
    )
    .await;
    assert_eq!(answer, "error=Error::TooLarge");
}

#[tokio::test]
async fn secrets_only_by_manifest_name() {
    let host = TestHost::with(&[FETCHER]).await;
    let ctx = CallContext::default().with_secrets([
        ("api_key".into(), "sk_1".into()),
        ("other".into(), "x".into()),
    ]);
    assert_eq!(
        run(&host, ctx.clone(), &[("op", "secret"), ("name", "api_key")]).await,
        "Ok(\"sk_1\")"
    );
    assert!(
        run(&host, ctx.clone(), &[("op", "secret"), ("name", "other")])
            .await
            .contains("NotAllowed")
    );
    assert!(
        run(
            &host,
            CallContext::default(),
            &[("op", "secret"), ("name", "api_key")]
        )
        .await
        .contains("NotFound")
    );
}

#[tokio::test]
async fn crypto_uses_host_held_keys_by_handle() {
    use aes_gcm::aead::{Aead, KeyInit};
    let host = TestHost::with(&[FETCHER]).await;
    // A throwaway key pair made for these tests.
    let private = Key::rsa_private_pem(include_str!("fixtures/test-rsa-private.pem")).unwrap();
    let public = Key::rsa_public_pem(include_str!("fixtures/test-rsa-public.pem")).unwrap();
    let aes_key = [9u8; 32];
    let nonce = [3u8; 12];
    let ciphertext = aes_gcm::Aes256Gcm::new_from_slice(&aes_key)
        .unwrap()
        .encrypt(&nonce.into(), b"card-token".as_ref())
        .unwrap();
    let keys: HashMap<String, Key> = HashMap::from([
        ("hmac".into(), Key::Hmac(b"key".to_vec())),
        ("rsa_private".into(), private),
        ("rsa_public".into(), public),
        ("aes".into(), Key::Aes256(Box::new(aes_key))),
        ("ungranted".into(), Key::Hmac(b"x".to_vec())),
    ]);
    let ctx = CallContext::default().with_keys(keys);
    // RFC 4231-style check against an independent HMAC computation.
    let expected = {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(b"key").unwrap();
        mac.update(b"The quick brown fox jumps over the lazy dog");
        hex::encode(mac.finalize().into_bytes())
    };
    assert_eq!(
        expected,
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
    let mac = run(
        &host,
        ctx.clone(),
        &[
            ("op", "hmac"),
            ("key", "hmac"),
            ("data", "The quick brown fox jumps over the lazy dog"),
        ],
    )
    .await;
    assert_eq!(mac, format!("Ok(\"{expected}\")"));
    assert!(
        run(
            &host,
            ctx.clone(),
            &[("op", "hmac"), ("key", "ungranted"), ("data", "x")]
        )
        .await
        .contains("UnknownKey")
    );
    assert!(
        run(
            &host,
            ctx.clone(),
            &[("op", "hmac"), ("key", "aes"), ("data", "x")]
        )
        .await
        .contains("WrongKeyType")
    );
    assert_eq!(
        run(&host, ctx.clone(), &[("op", "sha256"), ("data", "abc")]).await,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        run(&host, ctx.clone(), &[("op", "rsa"), ("data", "hello")]).await,
        "verify=Ok(true) tampered=Ok(false)"
    );
    let aes = run(
        &host,
        ctx.clone(),
        &[
            ("op", "aes"),
            ("nonce", &hex::encode(nonce)),
            ("ciphertext", &hex::encode(&ciphertext)),
        ],
    )
    .await;
    assert_eq!(aes, "Ok(\"card-token\")");
    let mut forged = ciphertext.clone();
    forged[0] ^= 1;
    let aes = run(
        &host,
        ctx,
        &[
            ("op", "aes"),
            ("nonce", &hex::encode(nonce)),
            ("ciphertext", &hex::encode(&forged)),
        ],
    )
    .await;
    assert!(aes.contains("InvalidInput"), "{aes}");
}
