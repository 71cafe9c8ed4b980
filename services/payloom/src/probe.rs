//! `payloom probe URL`: a container's health check without curl in the image. Succeeds
//! when the URL answers 2xx within five seconds. Without a URL it asks `PAYLOOM_PROBE_URL`,
//! which the image sets to the gateway's `/health` and each compose service overrides.

use std::time::Duration;

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// What to ask, e.g. http://127.0.0.1:40003/ready.
    pub url: Option<String>,
}

pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let url = match args.url {
        Some(url) => url,
        None => std::env::var("PAYLOOM_PROBE_URL")
            .map_err(|_| anyhow::anyhow!("give a URL, or set PAYLOOM_PROBE_URL"))?,
    };
    crate::app::block_on(async {
        let answer = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()?
            .get(&url)
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "{} answered {}",
            url,
            answer.status()
        );
        Ok(())
    })
}
