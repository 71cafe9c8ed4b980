//! A running platform for tests: `payloom dev` (or `serve`) as a child process on a free
//! port, a fresh data directory, and on PostgreSQL a fresh database, plus a signing client.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// PostgreSQL the suite uses; a fresh database is created on it per platform.
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// `payloom dev --split`: every service its own `serve` process, a PostgreSQL
    /// database each, mutual TLS, Kafka and Redis.
    Split,
}

/// Whether a missing service fails the suite (CI) instead of skipping.
/// Whether CI demands what `var` names (`var=1`) rather than letting the test skip.
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// Kills the process when the test ends, pass or fail.
pub struct Process(pub Child);

impl Process {
    /// Kills it, and every process of its group if it leads one (a `dev --split` and its
    /// services), with SIGKILL: no shutdown code runs anywhere.
    pub fn kill_group(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// A database created for one test and dropped after it.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// `None` (with a message) when PostgreSQL is unreachable and not required.
    pub async fn create() -> Option<Self> {
        use sqlx::Connection;
        let mut conn = match sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await {
            Ok(conn) => conn,
            Err(e) if !required("PAYLOOM_REQUIRE_POSTGRES") => {
                eprintln!(
                    "skipping: PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable ({e}); set PAYLOOM_REQUIRE_POSTGRES=1 to fail instead"
                );
                return None;
            }
            Err(e) => {
                panic!("PostgreSQL is required (PAYLOOM_REQUIRE_POSTGRES=1) but unreachable: {e}")
            }
        };
        let name = format!("payloom_t_{}", payloom_platform::ids::random_hex(6));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        Some(Self {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any runtime we may block on: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await {
                    // With it go the databases `dev --split` made beside it, one per service.
                    let pattern = format!("{name}\\_%");
                    let beside: Vec<String> = sqlx::query_scalar(
                        "SELECT datname::text FROM pg_database WHERE datname LIKE $1",
                    )
                    .bind(pattern)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_default();
                    for name in beside.iter().chain([&name]) {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                }
            });
        })
        .join();
    }
}

/// Redis for the tests that need it; `None` with a message when unreachable and not required.
pub async fn redis() -> Option<redis::aio::ConnectionManager> {
    match payloom_platform::cache::redis_connect(REDIS_URL).await {
        Ok(conn) => Some(conn),
        Err(e) if !required("PAYLOOM_REQUIRE_REDIS") => {
            eprintln!(
                "skipping: Redis at {REDIS_URL} is unreachable ({e}); set PAYLOOM_REQUIRE_REDIS=1 to fail instead"
            );
            None
        }
        Err(e) => panic!("Redis is required (PAYLOOM_REQUIRE_REDIS=1) but unreachable: {e}"),
    }
}

/// A merchant's API key.
#[derive(Debug, Clone)]
pub struct Key {
    pub merchant_id: String,
    pub key_id: String,
    pub secret: String,
}

/// A client of the merchant API at `base`, signing with `key`.
#[derive(Clone)]
pub struct Merchant {
    pub base: String,
    pub key: Key,
    pub http: reqwest::Client,
}

/// An answer: status, headers of interest, raw body and the body as JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub replayed: bool,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub fn error_code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

impl Merchant {
    /// Sends a signed request. `tweak` may change headers after signing (tests of refusal).
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
        tweak: impl FnOnce(&mut Vec<(&'static str, String)>),
    ) -> Answer {
        let request = self.signed(method, path, body, extra, tweak);
        answer(request.send().await.unwrap()).await
    }

    /// A signed request, not sent yet.
    fn signed(
        &self,
        method: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
        tweak: impl FnOnce(&mut Vec<(&'static str, String)>),
    ) -> reqwest::RequestBuilder {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut headers = payloom_payment_gateway::sign_request(
            &self.key.key_id,
            &self.key.secret,
            method,
            path,
            body,
            now,
        );
        tweak(&mut headers);
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        if !body.is_empty() {
            request = request.body(body.to_owned());
        }
        request
    }

    /// A signed request; `None` when the server did not answer (it was killed).
    pub async fn try_send(
        &self,
        method: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> Option<Answer> {
        let response = self
            .signed(method, path, body, extra, |_| {})
            .send()
            .await
            .ok()?;
        Some(answer(response).await)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        self.send_with(method, path, body, extra, |_| {}).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send("POST", path, &body.to_string(), &[]).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, "", &[]).await
    }

    /// Creates a payment; `extra` fields are merged into a valid USD body.
    pub async fn pay(&self, amount: i64, extra: Value) -> Answer {
        let mut body = serde_json::json!({
            "order_no": format!("ord-{}", payloom_platform::ids::random_hex(8)),
            "amount": amount,
            "currency": "USD",
        });
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        self.post("/v1/payments", body).await
    }

    /// A webhook endpoint at `url` for `payment.succeeded`, created or the test fails.
    pub async fn subscribe_to_payments(&self, url: &str) {
        let created = self
            .post(
                "/v1/webhook_endpoints",
                serde_json::json!({"url": url, "events": ["payment.succeeded"]}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
    }

    /// How many payments the merchant has (up to 100).
    pub async fn count(&self) -> usize {
        let list = self.get("/v1/payments?limit=100").await;
        assert_eq!(list.status, 200, "{}", list.text);
        list.json["data"].as_array().unwrap().len()
    }
}

/// A valid payment body of `amount` USD with a fresh order number.
pub fn payment_body(amount: i64) -> String {
    serde_json::json!({
        "order_no": format!("ord-{}", payloom_platform::ids::random_hex(8)),
        "amount": amount,
        "currency": "USD",
    })
    .to_string()
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        replayed,
        text,
        json,
    }
}

/// `payloom dev` (or `dev --split`) on a free port.
pub struct Platform {
    pub merchant: Merchant,
    /// The merchant API.
    pub base: String,
    /// The admin API: `base` under `dev`, admin-bff's listener under the split.
    pub admin_base: String,
    pub credentials: Value,
    pub data: tempfile::TempDir,
    pub backend: Backend,
    process: Option<Process>,
    database: Option<TestDatabase>,
}

impl Platform {
    /// `None` when the backend is unavailable here (see [`TestDatabase::create`]).
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, "").await
    }

    /// With extra configuration (TOML layered over the defaults).
    pub async fn start_with(backend: Backend, config: &str) -> Option<Self> {
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(TestDatabase::create().await?),
            Backend::Split => {
                let database = TestDatabase::create().await?;
                redis().await?;
                kafka_brokers()?;
                Some(database)
            }
        };
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("test.toml"), config).unwrap();
        let (process, base) = launch(data.path(), backend, database.as_ref());
        let credentials = read_credentials(data.path());
        let key = Key {
            merchant_id: credentials["merchant"]["id"].as_str().unwrap().to_owned(),
            key_id: credentials["merchant"]["api_key"]["key_id"]
                .as_str()
                .unwrap()
                .to_owned(),
            secret: credentials["merchant"]["api_key"]["secret"]
                .as_str()
                .unwrap()
                .to_owned(),
        };
        let merchant = Merchant {
            base: base.clone(),
            key,
            http: reqwest::Client::new(),
        };
        Some(Self {
            merchant,
            admin_base: admin_base(&credentials, &base),
            base,
            credentials,
            data,
            backend,
            process: Some(process),
            database,
        })
    }

    /// Kills the platform (under the split, every service) with SIGKILL: no shutdown code
    /// runs.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill_group();
        }
    }

    /// SIGTERM, as a supervisor stops it, and waits until it has exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut process = self.process.take().expect("running");
        let pid = rustix::process::Pid::from_raw(process.0.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        process.0.wait().unwrap()
    }

    /// SIGKILL to the `dev` process alone; under the split its services are left to
    /// notice.
    pub fn kill_launcher_only(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.0.kill().unwrap();
            process.0.wait().unwrap();
            std::mem::forget(process);
        }
    }

    /// Starts the platform again on the same data and databases.
    pub fn restart(&mut self) {
        self.kill();
        let (process, base) = launch(self.data.path(), self.backend, self.database.as_ref());
        self.process = Some(process);
        self.credentials = read_credentials(self.data.path());
        self.admin_base = admin_base(&self.credentials, &base);
        self.merchant.base = base.clone();
        self.base = base;
    }

    /// The URLs of the databases holding outboxes: the PostgreSQL test database, or each
    /// event-writing service's own.
    pub fn event_databases(&self) -> Vec<String> {
        match (&self.database, self.backend) {
            (Some(db), Backend::Postgres) => vec![db.url.clone()],
            _ => ["order", "payment-gateway", "accounting", "notification"]
                .iter()
                .map(|s| self.database_of(s))
                .collect(),
        }
    }

    /// The URL of one service's database.
    pub fn database_of(&self, service: &str) -> String {
        match &self.database {
            Some(db) if self.backend == Backend::Split => {
                format!("{}_{}", db.url, service.replace('-', "_"))
            }
            Some(db) => db.url.clone(),
            None => payloom_platform::db::sqlite_url(&self.data.path().join("db"), service),
        }
    }

    /// Where `/metrics` is served: the one listener of `dev`, or every service's.
    fn metrics_urls(&self) -> Vec<String> {
        match self.credentials["services"].as_object() {
            Some(services) => services
                .values()
                .map(|urls| format!("{}/metrics", urls["public"].as_str().unwrap()))
                .collect(),
            None => vec![format!("{}/metrics", self.base)],
        }
    }

    /// The sum of every sample of the metric `name` whose labels contain all of `labels`
    /// (e.g. `("payloom_channel_calls_total", &["operation=\"capture\""])`), over every
    /// process.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let mut text = String::new();
        for url in self.metrics_urls() {
            text += &reqwest::get(url).await.unwrap().text().await.unwrap();
        }
        text.lines()
            .filter(|line| {
                line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
            })
            .filter(|line| labels.iter().all(|l| line.contains(l)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// How many times channel components ran `operation` (the channel-adapter's counter).
    pub async fn channel_calls(&self, operation: &str) -> u64 {
        let label = format!("operation=\"{operation}\"");
        self.metric("payloom_channel_calls_total", &[&label]).await as u64
    }

    /// Runs statements on one service's database while the platform runs (fault injection).
    pub async fn execute(&self, service: &str, statements: &[&str]) {
        use payloom_platform::db::PoolOptions;
        let db = payloom_platform::Db::connect(&self.database_of(service), &PoolOptions::default())
            .await
            .unwrap();
        for statement in statements {
            sqlx::query(statement).execute(db.pool()).await.unwrap();
        }
        db.pool().close().await;
    }

    /// Makes every update of `table` matching `when` (SQL over `NEW`, e.g.
    /// `NEW.status = 'succeeded'`) fail in `service`'s database, until [`Self::mend`].
    pub async fn break_updates(&self, service: &str, table: &str, when: &str) {
        if self.on_postgres() {
            let function = "CREATE OR REPLACE FUNCTION payloom_test_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$";
            let trigger = format!(
                "CREATE TRIGGER payloom_test_fault BEFORE UPDATE ON {table} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION payloom_test_fault()"
            );
            self.execute(service, &[function, &trigger]).await;
        } else {
            let trigger = format!(
                "CREATE TRIGGER payloom_test_fault BEFORE UPDATE ON {table} WHEN {when} BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            );
            self.execute(service, &[&trigger]).await;
        }
    }

    /// Undoes [`Self::break_updates`] on `table`.
    pub async fn mend(&self, service: &str, table: &str) {
        let drop = match self.on_postgres() {
            true => format!("DROP TRIGGER payloom_test_fault ON {table}"),
            false => "DROP TRIGGER payloom_test_fault".to_owned(),
        };
        self.execute(service, &[&drop]).await;
    }

    /// Whether this platform runs on PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.database.is_some()
    }

    pub async fn admin_token(&self) -> String {
        let login = serde_json::json!({"username": self.credentials["admin"]["username"], "password": self.credentials["admin"]["password"]});
        let response = reqwest::Client::new()
            .post(format!("{}/admin/v1/login", self.admin_base))
            .json(&login)
            .send()
            .await
            .unwrap();
        let answer = answer(response).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.json["token"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Answer {
        let token = self.admin_token().await;
        let response = reqwest::Client::new()
            .request(
                method.parse().unwrap(),
                format!("{}{path}", self.admin_base),
            )
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    /// A second merchant with its own key and sandbox credentials, made through the admin API.
    pub async fn another_merchant(&self) -> Merchant {
        let merchant = self
            .admin(
                "POST",
                "/admin/v1/merchants",
                serde_json::json!({"name": "Other Shop"}),
            )
            .await;
        assert_eq!(merchant.status, 201, "{}", merchant.text);
        let id = merchant.json["id"].as_str().unwrap().to_owned();
        let key = self
            .admin(
                "POST",
                &format!("/admin/v1/merchants/{id}/api-keys"),
                Value::Null,
            )
            .await;
        assert_eq!(key.status, 201, "{}", key.text);
        let creds = self
            .admin(
                "PUT",
                &format!("/admin/v1/merchants/{id}/channels/sandbox/credentials"),
                serde_json::json!({"notify_secret": "s3cret"}),
            )
            .await;
        assert_eq!(creds.status, 200, "{}", creds.text);
        Merchant {
            base: self.base.clone(),
            key: Key {
                merchant_id: id,
                key_id: key.json["key_id"].as_str().unwrap().to_owned(),
                secret: key.json["secret"].as_str().unwrap().to_owned(),
            },
            http: reqwest::Client::new(),
        }
    }
}

/// `payloom dev` on `data` (with its `test.toml`) and the database, if any; under the
/// split, in a process group of its own with its services, so a kill reaches them all.
fn launch(
    data: &std::path::Path,
    backend: Backend,
    database: Option<&TestDatabase>,
) -> (Process, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payloom"));
    command
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--config")
        .arg(data.join("test.toml"));
    if let Some(db) = database {
        command.args(["--database-url", &db.url]);
    }
    if backend == Backend::Split {
        let brokers = kafka_brokers().expect("checked at start");
        command
            .args([
                "--split",
                "--redis-url",
                REDIS_URL,
                "--kafka-brokers",
                &brokers,
            ])
            .process_group(0);
    }
    spawn_and_wait(command, "payloom dev listening on ")
}

fn read_credentials(data: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(data.join("dev-credentials.json")).unwrap()).unwrap()
}

/// The admin API's base URL in the credentials file, else the merchant API's.
fn admin_base(credentials: &Value, base: &str) -> String {
    credentials["admin_url"]
        .as_str()
        .filter(|url| !url.is_empty())
        .unwrap_or(base)
        .to_owned()
}

/// The Kafka broker (`tansu`, which `.ci/run` starts; `PAYLOOM_KAFKA_BROKERS` names
/// another), or `None` and a message when none answers and none is required.
pub fn kafka_brokers() -> Option<String> {
    let brokers =
        std::env::var("PAYLOOM_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let first = brokers.split(',').next().unwrap_or_default().to_owned();
    let reachable = first
        .parse()
        .ok()
        .and_then(|addr| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()
        })
        .is_some();
    match (reachable, required("PAYLOOM_REQUIRE_KAFKA")) {
        (true, _) => Some(brokers),
        (false, true) => {
            panic!("a Kafka broker is required (PAYLOOM_REQUIRE_KAFKA=1) at {brokers}")
        }
        (false, false) => {
            eprintln!(
                "skipping: no Kafka broker at {brokers}; set PAYLOOM_REQUIRE_KAFKA=1 to fail instead"
            );
            None
        }
    }
}

/// Starts `command` and waits for the line starting with `marker`; returns the URL after it.
/// Drains the rest of its output in the background so the child never blocks on a pipe.
pub fn spawn_and_wait(command: Command, marker: &str) -> (Process, String) {
    // Warnings and errors reach the test output; the rest stays quiet.
    spawn_logging_to(command, marker, Stdio::inherit())
}

/// [`spawn_and_wait`], with the child's log (warnings and up) sent to `log`.
pub fn spawn_logging_to(mut command: Command, marker: &str, log: Stdio) -> (Process, String) {
    let mut child = command
        .env("PAYLOOM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let process = Process(child);
    let url = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the process exited before printing {marker:?}"))
            .unwrap();
        if let Some(rest) = line.strip_prefix(marker) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (process, url)
}

/// A free TCP port on loopback (bound, then released for a child to take), never the same
/// twice in this test binary: tests running side by side would otherwise race for it.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// One test per backend of a scenario `async fn $name(Backend)`, in a module named after it.
#[macro_export]
macro_rules! scenario_tests {
    ([$($test:ident: $backend:ident),*] $name:ident) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$name($crate::support::Backend::$backend).await
                }
            )*
        }
    };
}

/// Runs a scenario on SQLite, on PostgreSQL, and on the split topology (every service its
/// own process) as three tests.
#[macro_export]
macro_rules! in_every_topology {
    ($($name:ident),* $(,)?) => {
        $($crate::scenario_tests!([sqlite: Sqlite, postgres: Postgres, split: Split] $name);)*
    };
}

/// Runs a scenario on SQLite and on PostgreSQL as two tests.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $($crate::scenario_tests!([sqlite: Sqlite, postgres: Postgres] $name);)*
    };
}
