//! `bench/stats`: `GET /v1/stats` on a database of 10⁶ incidents.
//!
//! Per backend (a throwaway Postgres database, then an SQLite file) it starts the release
//! `incidentd` (which migrates), stops it, fills the database with SQL: `--incidents`
//! incidents declared evenly over the last `--days` days (severities 1:2:2:1; 95 %
//! acknowledged, all but the last two days' resolved or closed, with skewed durations; 3 %
//! reopened; 1 % merged; causes unknown, internal and third parties with five providers; one
//! or two of 20 components each; a postmortem for one in ten, a follow-up action for one in
//! five), as a busy organisation's history would be (what is open is recent and acknowledged;
//! what is overdue was announced: the workers stay idle), and analyses it (as autovacuum
//! would). Then it starts the service again and asks `GET /v1/stats` for windows of 30 days
//! (the default), 90 days, a year and everything, `--requests` times each, one request at a
//! time, checking that each answer counts the incidents SQL counts. Prints a Markdown table on
//! stdout (progress on stderr). See `bench/README.md`.

#[path = "../common.rs"]
mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use common::{Service, TOKEN, backend_database_url, percentile};

#[derive(Parser, Debug)]
#[command(about = "incidentd analytics: GET /v1/stats over 10⁶ incidents")]
struct Args {
    #[command(flatten)]
    server: common::BenchServer,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "postgres,sqlite")]
    backends: Vec<String>,
    /// Incidents in the database.
    #[arg(long, default_value_t = 1_000_000)]
    incidents: u64,
    /// Over how many days (back from now) they were declared.
    #[arg(long, default_value_t = 730)]
    days: u64,
    /// Requests per window.
    #[arg(long, default_value_t = 20)]
    requests: usize,
    /// Keep the databases (and print where they are) instead of dropping them.
    #[arg(long)]
    keep: bool,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The windows measured: a name and their length in days (`None`: the default window).
const WINDOWS: &[(&str, Option<i64>)] =
    &[("default (30 days)", None), ("90 days", Some(90)), ("365 days", Some(365)), ("all (730 days)", Some(731))];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();
    for backend in &args.backends {
        let url = backend_database_url(backend, &args.server.database_url, "stats")?;
        eprintln!("[{backend}] migrating {url}");
        Service::start(&url).await?.kill().await?;
        let started = Instant::now();
        fill(backend, &url, &args).await?;
        eprintln!("[{backend}] {} incidents written in {:.0} s", args.incidents, started.elapsed().as_secs_f64());
        let service = Service::start(&url).await?;
        let result = measure(backend, &url, &service, &args).await;
        if args.keep {
            eprintln!("[{backend}] kept {url}");
            service.kill().await?;
        } else {
            service.stop().await?;
        }
        rows.extend(result?);
    }
    println!(
        "incidentd stats bench: {} incidents over {} days, {} requests per window, one at a time\n",
        args.incidents, args.days, args.requests
    );
    println!("| backend | window | incidents in it | p50 ms | p99 ms | max ms |");
    println!("|---|---|---:|---:|---:|---:|");
    for r in rows {
        println!("| {} | {} | {} | {:.1} | {:.1} | {:.1} |", r.backend, r.window, r.incidents, r.p50, r.p99, r.max);
    }
    Ok(())
}

struct Row {
    backend: String,
    window: &'static str,
    incidents: i64,
    p50: f64,
    p99: f64,
    max: f64,
}

/// The statements that fill a database: 20 components, the incidents (`$1` of them over `$2`
/// days), their components, postmortems and actions (those overdue announced long ago, as
/// the workers would have).
fn fill_sql(backend: &str) -> Vec<String> {
    // Per backend: a row number `g` from 1 to N, a uniform random number in [0, 1), a new
    // UUID, and "now less this many seconds".
    let postgres = backend == "postgres";
    let series = |n: &str| {
        if postgres {
            format!("generate_series(1, {n}) AS s(g)")
        } else {
            format!(
                "(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) SELECT g FROM s) AS s"
            )
        }
    };
    let rnd = if postgres { "random()" } else { "((random() & 9007199254740991) / 9007199254740992.0)" };
    let uuid = if postgres {
        "gen_random_uuid()"
    } else {
        "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-7' || substr(hex(randomblob(2)), 2) || '-a' \
         || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"
    };
    let ago = |secs: &str| {
        if postgres {
            format!("now() - ({secs}) * interval '1 second'")
        } else {
            format!("(unixepoch('subsec') * 1000000 - CAST(({secs}) * 1000000 AS INTEGER))")
        }
    };
    let micros = |secs: &str| {
        if backend == "postgres" {
            format!("({secs}) * interval '1 second'")
        } else {
            format!("CAST(({secs}) * 1000000 AS INTEGER)")
        }
    };
    let (n, days) = if postgres { ("$1::bigint", "$2::float8") } else { ("$1", "$2") };
    // Every hundredth a merged duplicate; a third of those of the last two days still open
    // (and acknowledged: an unacknowledged one would set off reminders all through the run);
    // the rest resolved, most of them closed.
    let status = format!(
        "CASE WHEN g % 100 = 0 THEN 'merged' WHEN g * {days} < 2 * {n} AND g % 3 = 0 THEN 'investigating' \
         WHEN g % 10 < 4 THEN 'resolved' ELSE 'closed' END"
    );
    let declared = ago(&format!("g * {days} * 86400.0 / {n} + 60"));
    let all = series(n);
    // Components have ids made from their position (1 to 20), so that an incident names its
    // one or two components without a lookup: position 1 + g % 20, and for every third
    // incident also 1 + (7g + 3) % 20 when that is another.
    let component = |position: &str| {
        if postgres {
            format!("('00000000-0000-7000-8000-0000000000' || lpad(({position})::text, 2, '0'))::uuid")
        } else {
            format!("('00000000-0000-7000-8000-0000000000' || printf('%02d', {position}))")
        }
    };
    let (first, second) = (component("1 + g % 20"), component("1 + (g * 7 + 3) % 20"));
    let two = "g % 3 = 0 AND (g * 7 + 3) % 20 <> g % 20";
    let affected = |c: &str| {
        if postgres {
            format!("jsonb_build_object('component_id', {c}, 'status', 'partial_outage')")
        } else {
            format!("json_object('component_id', {c}, 'status', 'partial_outage')")
        }
    };
    let (ids, ids_one, json, json_one, none) = if postgres {
        (
            format!("ARRAY[{first}, {second}]"),
            format!("ARRAY[{first}]"),
            format!("jsonb_build_array({}, {})", affected(&first), affected(&second)),
            format!("jsonb_build_array({})", affected(&first)),
            ("'{}'", "'[]'"),
        )
    } else {
        (
            format!("json_array({first}, {second})"),
            format!("json_array({first})"),
            format!("json_array({}, {})", affected(&first), affected(&second)),
            format!("json_array({})", affected(&first)),
            ("'[]'", "'[]'"),
        )
    };
    let pick = |both: &str, one: &str, empty: &str| {
        format!("CASE WHEN status = 'merged' THEN {empty} WHEN {two} THEN {both} ELSE {one} END")
    };
    let (component_ids, affected_components) = (pick(&ids, &ids_one, none.0), pick(&json, &json_one, none.1));
    let (each, value) =
        if postgres { ("unnest(i.component_ids)", "c") } else { ("json_each(i.component_ids)", "c.value") };
    vec![
        format!(
            "INSERT INTO components (id, name, description, name_key, group_name, group_key, position, status, \
             created_at, updated_at) SELECT {id}, 'Component ' || g, '', 'component ' || g, NULL, '', g, 'operational', \
             {now}, {now} FROM {twenty}",
            id = component("g"),
            now = ago("0"),
            twenty = series("20"),
        ),
        format!(
            "INSERT INTO incidents (id, reference_number, title, summary, search_text, severity, status, impact, \
             affected_components, component_ids, workaround_availability, cause_kind, cause_provider, reopen_count, \
             started_at, detected_at, acknowledged_at, resolved_at, closed_at, created_at, updated_at) \
             SELECT {uuid}, g, 'Incident ' || g, '', 'incident ' || g, \
             CASE g % 6 WHEN 0 THEN 'sev1' WHEN 1 THEN 'sev2' WHEN 2 THEN 'sev2' WHEN 3 THEN 'sev3' WHEN 4 THEN 'sev3' ELSE 'sev4' END, \
             status, 'minor', {affected_components}, {component_ids}, 'unknown', \
             CASE g % 10 WHEN 0 THEN 'third_party' WHEN 1 THEN 'third_party' WHEN 2 THEN 'unknown' WHEN 3 THEN 'unknown' \
             WHEN 4 THEN 'unknown' ELSE 'internal' END, \
             CASE WHEN g % 10 < 2 THEN (CASE g % 7 WHEN 0 THEN 'AWS' WHEN 1 THEN 'Stripe' WHEN 2 THEN 'Cloudflare' \
             WHEN 3 THEN 'GitHub' ELSE 'Twilio' END) END, \
             CASE WHEN g % 33 = 0 THEN 1 ELSE 0 END, declared, declared, \
             CASE WHEN g % 20 <> 0 OR status = 'investigating' THEN declared + {tta} END, \
             CASE WHEN status IN ('resolved', 'closed') THEN declared + {ttr} END, \
             CASE WHEN status = 'closed' THEN declared + {ttr} END, declared, declared \
             FROM (SELECT g, {status} AS status, {declared} AS declared FROM {all}) AS i",
            tta = micros(&format!("30 + 3600 * {rnd} * {rnd}")),
            ttr = micros(&format!("600 + 172800 * {rnd} * {rnd} * {rnd}")),
        ),
        format!(
            "INSERT INTO incident_components (incident_id, component_id, status, incident_open) \
             SELECT i.id, {value}, 'partial_outage', i.status = 'investigating' FROM incidents i, {each} c"
        ),
        format!(
            "INSERT INTO postmortems (incident_id, status, body, public_summary, root_cause_category, third_party, \
             author, created_at, updated_at, incident_declared_at) SELECT id, 'draft', '', '', \
             CASE reference_number % 5 WHEN 0 THEN 'code_change' WHEN 1 THEN 'configuration_change' \
             WHEN 2 THEN 'capacity' WHEN 3 THEN 'dependency' ELSE 'infrastructure' END, \
             cause_kind = 'third_party', 'bench', created_at, created_at, created_at FROM incidents \
             WHERE reference_number % 10 = 4 AND status <> 'merged'"
        ),
        format!(
            "INSERT INTO actions (id, incident_id, title, owner, owner_key, due_date, priority, status, created_at, \
             updated_at, incident_declared_at, overdue_notified_for) SELECT {uuid}, id, 'Follow up ' || reference_number, 'team-' || (reference_number % 6), \
             'team-' || (reference_number % 6), {due}, 'medium', \
             CASE WHEN reference_number % 3 = 0 THEN 'open' ELSE 'done' END, created_at, created_at, created_at, {due} \
             FROM incidents WHERE reference_number % 5 = 2 AND status <> 'merged'",
            due = if postgres {
                "CAST(created_at + interval '30 days' AS date)".to_string()
            } else {
                "date(created_at / 1000000 + 30 * 86400, 'unixepoch')".to_string()
            }
        ),
    ]
}

async fn fill(backend: &str, url: &str, args: &Args) -> anyhow::Result<()> {
    let statements = fill_sql(backend);
    if backend == "postgres" {
        let pool = sqlx::PgPool::connect(url).await?;
        for sql in &statements {
            let q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            let q = if sql.contains("$1") { q.bind(args.incidents as i64).bind(args.days as f64) } else { q };
            q.execute(&pool).await.with_context(|| sql.clone())?;
        }
        sqlx::query("SELECT setval('incident_reference_seq', (SELECT max(reference_number) FROM incidents))")
            .execute(&pool)
            .await?;
        for table in ["incidents", "incident_components", "postmortems", "actions"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}"))).execute(&pool).await?;
        }
        pool.close().await;
    } else {
        let path = url.strip_prefix("sqlite:").context("an SQLite URL")?;
        let pool = sqlx::SqlitePool::connect(&format!("sqlite:{path}")).await?;
        for sql in &statements {
            let q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            let q = if sql.contains("$1") { q.bind(args.incidents as i64).bind(args.days as f64) } else { q };
            q.execute(&pool).await.with_context(|| sql.clone())?;
        }
        sqlx::query("UPDATE counters SET value = (SELECT max(reference_number) FROM incidents) WHERE name = 'incident_reference'")
            .execute(&pool)
            .await?;
        sqlx::query("ANALYZE").execute(&pool).await?;
        pool.close().await;
    }
    Ok(())
}

/// What SQL counts in a window: incidents declared in it, merged ones left out.
async fn counted(
    backend: &str,
    url: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<i64> {
    let sql = "SELECT count(*) FROM incidents WHERE created_at >= $1 AND created_at < $2 AND status <> 'merged'";
    if backend == "postgres" {
        let pool = sqlx::PgPool::connect(url).await?;
        let n = sqlx::query_scalar(sql).bind(from).bind(to).fetch_one(&pool).await?;
        pool.close().await;
        Ok(n)
    } else {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let n =
            sqlx::query_scalar(sql).bind(from.timestamp_micros()).bind(to.timestamp_micros()).fetch_one(&pool).await?;
        pool.close().await;
        Ok(n)
    }
}

async fn measure(backend: &str, url: &str, service: &Service, args: &Args) -> anyhow::Result<Vec<Row>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let mut rows = Vec::new();
    for (window, days) in WINDOWS {
        let to = chrono::Utc::now();
        let query = match days {
            Some(d) => format!(
                "?from={}&to={}",
                (to - chrono::Duration::days(*d)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => String::new(),
        };
        let mut latencies = Vec::new();
        let mut incidents = 0;
        // One request first, unmeasured (connections, caches).
        for n in 0..=args.requests {
            let started = Instant::now();
            let res = http.get(format!("{}/v1/stats{query}", service.base)).bearer_auth(TOKEN).send().await?;
            let status = res.status();
            let body: serde_json::Value = res.json().await?;
            let took = started.elapsed();
            if !status.is_success() {
                bail!("GET /v1/stats{query}: {status} {body}");
            }
            if n == 0 {
                incidents = body["incidents"].as_i64().unwrap_or_default();
                let from = chrono::DateTime::parse_from_rfc3339(body["from"].as_str().unwrap_or_default())?.to_utc();
                let to = chrono::DateTime::parse_from_rfc3339(body["to"].as_str().unwrap_or_default())?.to_utc();
                let expected = counted(backend, url, from, to).await?;
                if incidents != expected {
                    bail!("{window}: the API counted {incidents} incidents, SQL {expected}");
                }
                continue;
            }
            latencies.push(took.as_micros() as i64);
        }
        latencies.sort_unstable();
        let max = *latencies.last().unwrap_or(&0) as f64 / 1000.0;
        let row = Row {
            backend: backend.to_string(),
            window,
            incidents,
            p50: percentile(&latencies, 50.0),
            p99: percentile(&latencies, 99.0),
            max,
        };
        eprintln!("[{backend}] {window}: {} incidents, p50 {:.1} ms, p99 {:.1} ms", row.incidents, row.p50, row.p99);
        rows.push(row);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(rows)
}
