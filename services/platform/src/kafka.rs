//! Kafka as the carrier of events between processes (`serve` with `[events]
//! kafka_brokers`). The relay produces each outbox row to its topic, keyed so one
//! payment's events stay in order on one partition, and deletes the row only after the
//! broker acknowledged it. A consumer commits a message's offset only after its
//! [`Subscription`] handled (or dead-lettered) the event, so a crash redelivers, and the
//! subscription's event-id record makes the redelivery change nothing.
//!
//! Every message is signed by the service that produced it and verified before it is
//! handled ([`crate::provenance`]); one that fails is skipped, never acted on.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::events::{Envelope, Outgoing, Publisher, Subscription};
use crate::provenance::{CERT_HEADER, EventSigner, EventVerifier, SIGNATURE_HEADER};
use crate::telemetry::{self, TRACEPARENT};

/// How long a produce may wait in the client's queue before the batch fails.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(10);

/// A deployment's names for the registry's topics, `<prefix><topic>`: deployments (or test
/// runs) sharing one cluster then never read each other's events. Signatures and
/// consumers speak of the registry's topic; only the broker sees the prefix.
#[derive(Debug, Clone, Default)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The broker's name for `topic`.
    pub fn name(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    /// The registry's topic a broker name stands for, if it is this deployment's.
    pub fn topic<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(self.prefix.as_str())
    }
}

/// Publishes one service's outbox, signed as that service.
pub struct KafkaPublisher {
    producer: FutureProducer,
    signer: EventSigner,
    names: TopicNames,
}

impl KafkaPublisher {
    pub fn new(brokers: &str, signer: EventSigner) -> anyhow::Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            // Retries never duplicate or reorder within a partition.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "1")
            .create()?;
        Ok(Self {
            producer,
            signer,
            names: TopicNames::default(),
        })
    }

    /// Publishes under the deployment's topic names.
    pub fn named(self, names: TopicNames) -> Self {
        Self { names, ..self }
    }
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&self, batch: &[Outgoing]) -> anyhow::Result<()> {
        let headers = batch
            .iter()
            .map(|out| {
                let signed =
                    signed_headers(&self.signer, &out.topic, &out.key, out.json.as_bytes())?;
                let headers = signed.insert(Header {
                    key: "event-id",
                    value: Some(out.envelope.id.as_str()),
                });
                Ok(match &out.trace_parent {
                    Some(trace) => headers.insert(Header {
                        key: TRACEPARENT,
                        value: Some(trace.as_str()),
                    }),
                    None => headers,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let names: Vec<String> = batch
            .iter()
            .map(|out| self.names.name(&out.topic))
            .collect();
        let sends = batch
            .iter()
            .zip(headers)
            .zip(&names)
            .map(|((out, headers), name)| {
                self.producer.send(
                    FutureRecord::to(name)
                        .key(&out.key)
                        .payload(&out.json)
                        .headers(headers),
                    PRODUCE_TIMEOUT,
                )
            });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(e, _)| anyhow::anyhow!("producing to Kafka: {e}"))?;
        }
        Ok(())
    }
}

/// Creates each of `topics` that the cluster does not have yet, so consumers that start
/// before any producer find them, with the partitions the deployment chose rather than
/// the broker's default. An existing topic is left as it is.
pub async fn ensure_topics(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
    replication: i32,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        partitions >= 1 && replication >= 1,
        "[events] topic_partitions and topic_replication must be at least 1"
    );
    let known = existing_topics(brokers).await?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|topic| !known.iter().any(|known| known == *topic))
        .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(replication)))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(PRODUCE_TIMEOUT));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating the Kafka topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// The topics the cluster has (a blocking metadata request, off the async workers).
pub async fn existing_topics(brokers: &str) -> anyhow::Result<Vec<String>> {
    let brokers = brokers.to_owned();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
        let metadata = client
            .fetch_metadata(None, PRODUCE_TIMEOUT)
            .context("reading the Kafka cluster's topics")?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|topic| topic.error().is_none())
            .map(|topic| topic.name().to_owned())
            .collect())
    })
    .await?
}

/// How long a group waits for a member that stopped answering (a killed process) before
/// its partitions go to the others, and how long a rebalance waits for members to rejoin:
/// short, where Kafka's defaults (45 s and 5 min) would hold a restarted consumer's events
/// back that long. A handler stuck past the poll interval (its database down) leaves the
/// group and rejoins when it reads again; its event comes again and, by its id, changes
/// nothing twice.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// A consumer group member feeding `subscription` from its topics (by the deployment's
/// `names`).
pub fn consumer(
    brokers: &str,
    group: &str,
    subscription: &Subscription,
    names: &TopicNames,
) -> anyhow::Result<StreamConsumer> {
    let consumer = unsubscribed(brokers, group)?;
    consumer.subscribe(
        &topics_of(subscription, names)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )?;
    Ok(consumer)
}

/// A consumer that reads every partition of its topics itself, resuming at the offsets
/// committed under `group`, and joins no group: right where one node runs the consumer,
/// which then resumes at once after a crash instead of waiting for a group to let go of
/// its killed predecessor (and for the broker to get that right).
pub fn sole_consumer(
    brokers: &str,
    group: &str,
    subscription: &Subscription,
    names: &TopicNames,
) -> anyhow::Result<StreamConsumer> {
    let consumer = unsubscribed(brokers, group)?;
    let mut partitions = rdkafka::TopicPartitionList::new();
    for topic in topics_of(subscription, names) {
        let metadata = consumer
            .fetch_metadata(Some(&topic), PRODUCE_TIMEOUT)
            .with_context(|| format!("reading the partitions of {topic}"))?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                partitions.add_partition_offset(
                    found.name(),
                    partition.id(),
                    rdkafka::Offset::Stored,
                )?;
            }
        }
    }
    consumer.assign(&partitions)?;
    Ok(consumer)
}

/// The broker names of the topics `subscription` reads.
fn topics_of(subscription: &Subscription, names: &TopicNames) -> Vec<String> {
    subscription
        .consumer
        .topics()
        .iter()
        .map(|topic| names.name(topic))
        .collect()
}

/// A consumer of `group` that commits only what it handled, from the earliest event when
/// the group has committed nothing yet.
fn unsubscribed(brokers: &str, group: &str) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set(
            "session.timeout.ms",
            SESSION_TIMEOUT.as_millis().to_string(),
        )
        .set("heartbeat.interval.ms", "1000")
        .set(
            "max.poll.interval.ms",
            POLL_INTERVAL.as_millis().to_string(),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    Ok(consumer)
}

/// The headers that let a consumer check who produced a message.
pub fn signed_headers(
    signer: &EventSigner,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> anyhow::Result<OwnedHeaders> {
    let signature = signer.sign(topic, key, payload)?;
    Ok(OwnedHeaders::new()
        .insert(Header {
            key: CERT_HEADER,
            value: Some(signer.certificate()),
        })
        .insert(Header {
            key: SIGNATURE_HEADER,
            value: Some(signature.as_slice()),
        }))
}

/// The value of a message's header.
pub fn header<'m>(message: &'m impl Message, key: &str) -> Option<&'m [u8]> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|header| header.key == key)
        .and_then(|header| header.value)
}

/// Checks who produced a message; logs and returns `false` for one nobody can vouch for.
pub fn verified(message: &impl Message, verifier: &EventVerifier, names: &TopicNames) -> bool {
    let key = message
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .unwrap_or("");
    let Some(topic) = names.topic(message.topic()) else {
        tracing::error!(
            topic = message.topic(),
            "event refused: not this deployment's topic"
        );
        return false;
    };
    let origin = verifier.verify(
        topic,
        key,
        message.payload().unwrap_or_default(),
        header(message, CERT_HEADER),
        header(message, SIGNATURE_HEADER),
    );
    if let Err(refused) = &origin {
        tracing::error!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            "event refused: {refused}"
        );
    }
    origin.is_ok()
}

/// Handles one received message: verify its origin, parse, process (retrying while even
/// the dead letter cannot be written), then commit its offset.
pub async fn handle_message(
    consumer: &StreamConsumer,
    message: &rdkafka::message::BorrowedMessage<'_>,
    subscription: &Subscription,
    verifier: &EventVerifier,
    names: &TopicNames,
) -> anyhow::Result<()> {
    if !verified(message, verifier, names) {
        consumer.commit_message(message, CommitMode::Async)?;
        return Ok(());
    }
    let parsed = message
        .payload()
        .map(serde_json::from_slice::<Envelope>)
        .transpose();
    match parsed {
        Ok(Some(envelope)) => {
            // Handling the event continues the trace of the request that caused it.
            let span = tracing::info_span!(
                "event",
                topic = message.topic(),
                event_id = %envelope.id,
                trace_id = tracing::field::Empty
            );
            let trace = header(message, TRACEPARENT).and_then(|v| std::str::from_utf8(v).ok());
            telemetry::continue_traceparent(&span, trace);
            let handled = async {
                let mut failures = 0u32;
                while let Err(e) = subscription.process(&envelope).await {
                    failures += 1;
                    tracing::warn!(event_id = envelope.id, "event not processed: {e:#}");
                    tokio::time::sleep(Duration::from_millis(100 << failures.min(6))).await;
                }
            };
            tracing::Instrument::instrument(handled, span).await;
        }
        // Nothing in it can ever be handled; skipping it is all a retry could do.
        Ok(None) | Err(_) => tracing::error!(
            topic = message.topic(),
            offset = message.offset(),
            "unreadable event skipped"
        ),
    }
    consumer.commit_message(message, CommitMode::Async)?;
    Ok(())
}

/// Runs a consumer until the process ends: a group member, or with `sole` a
/// [`sole_consumer`].
pub fn spawn_consumer(
    brokers: &str,
    group: &str,
    subscription: Subscription,
    verifier: std::sync::Arc<EventVerifier>,
    names: TopicNames,
    sole: bool,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let consumer = match sole {
        true => sole_consumer(brokers, group, &subscription, &names)?,
        false => consumer(brokers, group, &subscription, &names)?,
    };
    Ok(tokio::spawn(async move {
        loop {
            match consumer.recv().await {
                Ok(message) => {
                    if let Err(e) =
                        handle_message(&consumer, &message, &subscription, &verifier, &names).await
                    {
                        tracing::warn!("committing a Kafka offset: {e:#}");
                    }
                }
                Err(e) => {
                    tracing::warn!("reading from Kafka: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }))
}
