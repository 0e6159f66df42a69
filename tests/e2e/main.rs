//! Integration tests on a real control plane (etcd, kube-apiserver,
//! kube-controller-manager built by hack/controlplane/build.sh), started once for the whole
//! binary and stopped after the last test.

mod bad_input;
mod browser;
mod chart;
mod client_model;
mod faults;
mod federation;
mod lifecycle;
mod operations;
mod registration;
mod runtime;
mod secretless;
mod sign_in;
mod support;
mod tenancy;
mod token_endpoint;
mod verification;
mod web_apps;

use std::process::ExitCode;
use std::sync::Arc;

use support::{TestFn, trial};

fn main() -> ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Listing tests needs no cluster.
    let env = if args.list {
        None
    } else {
        match rt.block_on(support::Env::start()) {
            Ok(env) => Some(Arc::new(env)),
            Err(e) => {
                eprintln!("cannot start the control plane: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    let tests: Vec<(&'static str, TestFn)> = [
        token_endpoint::tests(),
        verification::tests(),
        lifecycle::tests(),
        bad_input::tests(),
        client_model::tests(),
        registration::tests(),
        operations::tests(),
        chart::tests(),
        faults::tests(),
        sign_in::tests(),
        web_apps::tests(),
        federation::tests(),
        secretless::tests(),
        runtime::tests(),
        tenancy::tests(),
    ]
    .concat();
    let trials = tests
        .into_iter()
        .map(|(name, f)| trial(name, env.clone(), rt.handle().clone(), f))
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop the control plane before exiting: process::exit would skip the drop.
    drop(env);
    conclusion.exit_code()
}
