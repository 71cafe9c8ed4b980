//! `payloom demo pay`: one signed sample payment against a running `payloom dev`, using
//! the demo merchant's key from `<data-dir>/dev-credentials.json`.

use std::path::PathBuf;

use anyhow::Context;

use crate::dev::{CREDENTIALS_FILE, DevCredentials};

#[derive(clap::Subcommand)]
pub enum DemoCommand {
    /// Create a signed sample payment and print the answer.
    Pay(PayArgs),
}

#[derive(clap::Args)]
pub struct PayArgs {
    /// Where `payloom dev` wrote its credentials.
    #[arg(long, default_value = ".payloom")]
    pub data_dir: PathBuf,
    /// Minor units (1099 = 10.99 USD). The sandbox reads some endings as outcomes.
    #[arg(long, default_value_t = 1099)]
    pub amount: i64,
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// A sandbox test card, e.g. 4000000000000002 for a decline.
    #[arg(long)]
    pub card: Option<String>,
}

pub fn load_credentials(data_dir: &std::path::Path) -> anyhow::Result<DevCredentials> {
    let path = data_dir.join(CREDENTIALS_FILE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (is `payloom dev` running with this --data-dir?)",
            path.display()
        )
    })?;
    Ok(serde_json::from_slice(&bytes)?)
}

pub fn run(command: DemoCommand) -> anyhow::Result<()> {
    let DemoCommand::Pay(args) = command;
    let credentials = load_credentials(&args.data_dir)?;
    let now = payloom_platform::Clock::now_ms(&payloom_platform::SystemClock);
    let mut body = serde_json::json!({
        "order_no": format!("demo-{now}"),
        "amount": args.amount,
        "currency": args.currency,
        "description": "payloom demo pay",
        "customer": {"email": "customer@example.com", "country": "US"},
    });
    if let Some(card) = &args.card {
        body["method_data"] = serde_json::json!({"card.number": card});
    }
    let body = body.to_string();
    let key = &credentials.merchant.api_key;
    let headers = payloom_payment_gateway::sign_request(
        &key.key_id,
        &key.secret,
        "POST",
        "/v1/payments",
        &body,
        now / 1_000,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, text) = runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("{}/v1/payments", credentials.base_url))
            .header("content-type", "application/json")
            .header("idempotency-key", format!("demo-{now}"))
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {}/v1/payments", credentials.base_url))?;
        let status = response.status();
        anyhow::Ok((status, response.text().await?))
    })?;
    let answer: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let pretty = answer
        .as_ref()
        .and_then(|v| serde_json::to_string_pretty(v).ok())
        .unwrap_or(text);
    println!("POST /v1/payments -> {status}\n{pretty}");
    if let Some(payment) = answer.filter(|p| p["object"] == "payment") {
        let money = payloom_platform::money::Money {
            amount_minor: args.amount,
            currency: args.currency.to_ascii_uppercase(),
        };
        println!(
            "{} {}: {}",
            payment["id"].as_str().unwrap_or(""),
            money.display(),
            payment["status"].as_str().unwrap_or("")
        );
    }
    anyhow::ensure!(status.is_success(), "the payment was refused");
    Ok(())
}
