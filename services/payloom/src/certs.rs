//! `payloom certs init`: the deployment's own CA and a certificate per service, for the
//! mutual TLS between the processes of `serve`. Keys are written readable by their owner
//! only; an existing CA is never replaced unless asked, since every certificate hangs on it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use payloom_platform::tls::{self, NETWORK_DOMAIN};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

#[derive(clap::Subcommand)]
pub enum CertsCommand {
    /// Create a CA and a certificate per service (SANs: the service name,
    /// `<service>.payment-network`, `localhost`, `127.0.0.1`).
    Init(InitArgs),
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// Where the CA and the certificates go.
    #[arg(long, default_value = "certs")]
    pub dir: PathBuf,
    /// Replace an existing CA (every certificate issued by the old one stops working).
    #[arg(long)]
    pub force: bool,
    /// How long the certificates are valid.
    #[arg(long, default_value_t = 397)]
    pub days: i64,
    /// Give each service's key to this user id (run as root): the user a container runs
    /// as, when the image makes the certificates for `compose/deploy.sh`.
    #[arg(long)]
    pub owner: Option<u32>,
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init(args) => init(&args),
    }
}

fn init(args: &InitArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=3650).contains(&args.days),
        "--days must be between 1 and 3650"
    );
    let ca_path = args.dir.join("ca.pem");
    anyhow::ensure!(
        args.force || !ca_path.exists(),
        "{} already holds a CA; --force replaces it and every certificate it issued",
        args.dir.display()
    );
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    let not_after = not_before + Duration::days(args.days);

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = named("Payloom deployment CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (ca.not_before, ca.not_after) = (not_before, not_after);
    let ca_cert = ca.self_signed(&ca_key)?;
    write_private(&args.dir.join("ca.key"), &ca_key.serialize_pem())?;
    std::fs::write(&ca_path, ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);

    let services = crate::services::registered().names();
    for name in &services {
        let name = *name;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![
            name.to_owned(),
            format!("{name}.{NETWORK_DOMAIN}"),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])?;
        params.distinguished_name = named(name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        (params.not_before, params.not_after) = (not_before, not_after);
        let cert = params.signed_by(&key, &issuer)?;
        let [_, cert_path, key_path] = tls::files(&args.dir, name);
        std::fs::write(&cert_path, cert.pem())?;
        write_private(&key_path, &key.serialize_pem())?;
        if let Some(uid) = args.owner {
            std::os::unix::fs::chown(&key_path, Some(uid), Some(uid))
                .with_context(|| format!("giving {} to user {uid}", key_path.display()))?;
        }
    }
    println!(
        "payloom certs: a CA and {} service certificates in {}, valid until {}",
        services.len(),
        args.dir.display(),
        not_after.date()
    );
    Ok(())
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Payloom");
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes a key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    // A file that existed keeps its old mode through `open`; narrow it as well.
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}
