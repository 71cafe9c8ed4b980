//! Email behind a trait: operators are told by mail when an endpoint is disabled. `dev`
//! writes messages to a file (one JSON object per line); without one they are logged.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
}

pub trait Mailer: Send + Sync {
    fn send(&self, email: &Email) -> anyhow::Result<()>;
}

/// Logs each message.
pub struct LogMailer;

impl Mailer for LogMailer {
    fn send(&self, email: &Email) -> anyhow::Result<()> {
        tracing::info!(
            to = email.to,
            subject = email.subject,
            "email: {}",
            email.body
        );
        Ok(())
    }
}

/// Appends each message to a file as a JSON line.
pub struct FileMailer {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileMailer {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }
}

impl Mailer for FileMailer {
    fn send(&self, email: &Email) -> anyhow::Result<()> {
        let _one_writer = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(file, "{}", serde_json::to_string(email)?)?;
        Ok(())
    }
}
