//! `fogbook bench --db postgres://…` (issue 17): the step overhead of the PostgreSQL store
//! beside that server's commit floor, measured in the same run.
//!
//! The benchmark's store lives in a scratch schema of the database the URL names
//! (`fogbook_bench_<pid>`, through the connection's `search_path`), created first and dropped
//! with everything in it at the end: the database's own fogbook tables, if any, are never
//! touched. The floor is a bare single-row insert per transaction into a plain table of that
//! schema, with the server's `synchronous_commit` and `fsync` as they are (printed beside it).
//! The emulator phases (resume latency, memory, fleet) measure the SQLite store and are not
//! run here.

use fogbook_engine::EngineError;
use fogbook_state::pg::{PgFloor, PgUrl, StoreUrl};
use fogbook_state::{StateError, Store};

use crate::cli::{BenchArgs, Cli, Format};
use crate::error::fail;
use crate::exit::Exit;
use crate::output;

/// `url` with the connection's `search_path` set to `schema` (the `options` parameter, which
/// the client hands to the server at startup).
fn in_schema(raw: &str, schema: &str) -> Result<PgUrl, Exit> {
    let sep = if raw.contains('?') { '&' } else { '?' };
    match format!("{raw}{sep}options=-c%20search_path%3D{schema}").parse::<StoreUrl>() {
        Ok(StoreUrl::Postgres(url)) => Ok(url),
        Ok(StoreUrl::Sqlite(_)) => Err(Exit::Internal),
        Err(e) => Err(fail(StateError::StoreUrl(e))),
    }
}

/// Runs `f` on a blocking thread (the PostgreSQL client blocks).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StateError::StoreClosed)?
}

pub(crate) async fn bench(cli: &Cli, args: &BenchArgs, raw: &str, base: PgUrl) -> Exit {
    let config = super::command::config_of(args);
    let schema = format!("fogbook_bench_{}", std::process::id());
    let url = match in_schema(raw, &schema) {
        Ok(u) => u,
        Err(code) => return code,
    };
    output::note(
        cli.quiet,
        &format!("benchmarking PostgreSQL at {base}, in the scratch schema {schema} …"),
    );
    let made = {
        let (base, schema) = (base.clone(), schema.clone());
        blocking(move || fogbook_state::pg::create_schema(&base, &schema)).await
    };
    if let Err(e) = made {
        return fail(e);
    }
    let result = measure(&url, config).await;
    let dropped = {
        let (base, schema) = (base.clone(), schema.clone());
        blocking(move || fogbook_state::pg::drop_schema(&base, &schema)).await
    };
    let (report, settings) = match result {
        Ok(r) => r,
        Err(e) => {
            output::error_chain(
                &e,
                Some("check that the URL's user may create a schema in this database"),
            );
            return Exit::StoreFailed;
        }
    };
    if let Err(e) = dropped {
        return fail(e);
    }
    // Measured by every run of the benchmark (the floor is its first step).
    let settings = settings.unwrap_or(PgFloor {
        commits_per_s: report.floor_commits_per_s,
        synchronous_commit: "unknown".to_owned(),
        fsync: "unknown".to_owned(),
    });
    let label = "floor: durable PostgreSQL commits (server)";
    if cli.format == Format::Json {
        output::json(
            "bench",
            &PgBenchOut {
                backend: "postgres",
                synchronous_commit: &settings.synchronous_commit,
                fsync: &settings.fsync,
                engine: &report,
            },
        );
    } else {
        let mut text = super::command::render_engine(&report, &config, label);
        if let (Some(seq), Some(conc)) = (
            report.sequential_round_trips_per_step,
            report.concurrent_round_trips_per_step,
        ) {
            text.push_str(&format!(
                "  (round trips to the server per step, every connection counted, a pipeline once: sequential {seq:.2}, concurrent {conc:.2})\n"
            ));
        }
        text.push_str(&format!(
            "  (floor: one single-row insert per transaction on one connection, with the server's synchronous_commit={} and fsync={})\n",
            settings.synchronous_commit, settings.fsync
        ));
        output::data(&text);
    }
    Exit::Success
}

/// The JSON of `fogbook bench --db postgres://…`: the engine's figures (as for SQLite), the
/// backend, and the server settings the floor was measured with.
#[derive(serde::Serialize)]
struct PgBenchOut<'a> {
    backend: &'static str,
    synchronous_commit: &'a str,
    fsync: &'a str,
    #[serde(flatten)]
    engine: &'a fogbook_engine::bench::BenchReport,
}

/// The engine's benchmark on a store in the scratch schema, with the server's floor.
async fn measure(
    url: &PgUrl,
    config: fogbook_engine::bench::BenchConfig,
) -> Result<(fogbook_engine::bench::BenchReport, Option<PgFloor>), EngineError> {
    let store = {
        let url = StoreUrl::Postgres(url.clone());
        blocking(move || Store::open_url(&url)).await?
    };
    let settings = std::sync::Arc::new(std::sync::Mutex::new(None::<PgFloor>));
    let floor = || {
        let (url, settings) = (url.clone(), settings.clone());
        async move {
            let f = blocking(move || fogbook_state::pg::commit_floor(&url, config.floor_commits)).await?;
            let per_s = f.commits_per_s;
            *settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(f);
            Ok::<f64, EngineError>(per_s)
        }
    };
    let report = fogbook_engine::bench::run_bench_on(store, floor, config).await?;
    let settings = settings
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    Ok((report, settings))
}
