//! `envtest`: a local control plane with the given CRDs installed, until SIGINT or SIGTERM.
//! `hack/run.sh` and `hack/bench.sh` run the operator's own binaries against it; its admin
//! kubeconfig is `<dir>/kubeconfig`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(about = "A local Kubernetes control plane for oauth-operator's tests and local runs")]
struct Args {
    /// Where the control plane keeps its certificates, data and logs; emptied first.
    #[arg(long, default_value = "target/local-cluster")]
    dir: PathBuf,
    /// CRDs to install before anything else starts (a multi-document YAML file).
    #[arg(long, default_value = "crds/crds.yaml")]
    crds: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("envtest: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let crds = envtest::read_crds(&args.crds)?;
    // A previous run's data would hold another PKI's certificates.
    match std::fs::remove_dir_all(&args.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let mut terminate = signal(SignalKind::terminate())?;
    let control_plane = envtest::ControlPlane::start(envtest::Options {
        dir: Some(args.dir),
        crds,
        issuer_at_own_url: false,
    })
    .await?;
    println!(
        "control plane ready: server {} kubeconfig {}",
        control_plane.server(),
        control_plane.kubeconfig().display()
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    // Dropping it stops every process, newest first.
    drop(control_plane);
    Ok(())
}
