//! `aimp bench gen` then `aimp bench ann` and `aimp bench filter` on a small set: the results
//! file's schema, exact search at recall 1, valid SVG and PNG plots, and a clear error for a
//! malformed file.

use std::process::Command;

use serde_json::Value;

use super::BIN;

fn aimp(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run aimp")
}

#[test]
fn gen_then_ann_writes_results_and_plots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let set = dir.path().join("set");
    let set_arg = set.to_string_lossy().into_owned();
    let out = aimp(&[
        "bench",
        "gen",
        "--kind",
        "clustered",
        "--n",
        "2000",
        "--dim",
        "16",
        "--queries",
        "50",
        "--seed",
        "3",
        "--out",
        &set_arg,
        "--format",
        "npy",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "base.fvecs",
        "query.fvecs",
        "gt.ivecs",
        "base.npy",
        "query.npy",
        "gt.npy",
    ] {
        assert!(set.join(f).exists(), "{f}");
    }
    let results = dir.path().join("results.json");
    let plot = dir.path().join("plot.svg");
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    // The .npy copies, and no --gt: the truth is computed and cached beside the base.
    let out = aimp(&[
        "bench",
        "ann",
        "--base",
        &path(&set.join("base.npy")),
        "--query",
        &path(&set.join("query.npy")),
        "--k",
        "10",
        "--m",
        "8",
        "--ef-construction",
        "64",
        "--ef",
        "16,64",
        "--threads",
        "2",
        "--engines",
        "ours,hnsw_rs,exact",
        "--out",
        &path(&results),
        "--plot",
        &path(&plot),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("computed and cached"), "{stderr}");

    let records: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&results).expect("results")).expect("json");
    assert_eq!(records.len(), 5);
    for r in &records {
        for field in [
            "engine",
            "ef",
            "recall",
            "qps_single",
            "qps_threads",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "build_s",
            "bytes_per_vector",
            "machine",
            "versions",
            "m",
            "ef_construction",
            "k",
            "metric",
            "n",
            "dim",
        ] {
            assert!(r.get(field).is_some(), "{field} missing in {r}");
        }
        assert!(r["qps_single"].as_f64().expect("qps") > 0.0);
        assert_eq!(r["n"], 2000);
        assert!(r["machine"]["cores"].as_u64().expect("cores") >= 1);
        assert_eq!(r["versions"]["hnsw_rs"], "0.3.5");
    }
    let exact = records
        .iter()
        .find(|r| r["engine"] == "exact")
        .expect("exact");
    assert_eq!(exact["recall"], 1.0);
    assert!(exact["ef"].is_null());
    let ours: Vec<&Value> = records.iter().filter(|r| r["engine"] == "ours").collect();
    assert_eq!(ours.len(), 2);
    assert!(
        ours[1]["recall"].as_f64().expect("recall") >= 0.9,
        "{}",
        ours[1]
    );

    let svg = std::fs::read_to_string(&plot).expect("svg");
    assert!(
        svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
        "not an SVG"
    );
    assert!(svg.contains("hnsw_rs") && svg.contains("recall@k"));
    let png = image::open(plot.with_extension("png")).expect("a decodable PNG");
    assert!(png.width() > 100 && png.height() > 100);

    // The second run reads the cached truth; the ivecs truth file works as --gt.
    let out = aimp(&[
        "bench",
        "ann",
        "--base",
        &path(&set.join("base.fvecs")),
        "--query",
        &path(&set.join("query.fvecs")),
        "--gt",
        &path(&set.join("gt.ivecs")),
        "--ef",
        "32",
        "--engines",
        "ours",
        "--out",
        &path(&results),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_malformed_file_is_a_clear_error_naming_the_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.fvecs");
    // One record of dimension 4 cut after two values.
    let mut bytes = 4i32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 8]);
    std::fs::write(&bad, bytes).expect("write");
    let bad_arg = bad.to_string_lossy().into_owned();
    let out = aimp(&[
        "bench",
        "ann",
        "--base",
        &bad_arg,
        "--query",
        &bad_arg,
        "--out",
        &dir.path().join("r.json").to_string_lossy(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("byte offset 4") && stderr.contains("cut short"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_stops_a_run_and_keeps_the_results_so_far() {
    let dir = tempfile::tempdir().expect("tempdir");
    let set = dir.path().join("set");
    let out = aimp(&[
        "bench",
        "gen",
        "--n",
        "30000",
        "--dim",
        "48",
        "--queries",
        "200",
        "--k",
        "10",
        "--out",
        &set.to_string_lossy(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = dir.path().join("results.json");
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let mut child = Command::new(BIN)
        .args([
            "bench",
            "ann",
            "--base",
            &path(&set.join("base.fvecs")),
            "--query",
            &path(&set.join("query.fvecs")),
            "--gt",
            &path(&set.join("gt.ivecs")),
            "--engines",
            "exact,ours,hnsw_rs",
            "--ef",
            "16,32,64,128,256,512",
            "--threads",
            "1",
            "--out",
            &path(&results),
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Exact search is measured first; interrupt while ours is being built.
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    loop {
        let line = lines
            .next()
            .expect("building ours never came")
            .expect("line");
        if line.contains("building ours") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("stopped early"), "{stdout}");
    let records: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&results).expect("results")).expect("json");
    assert!(!records.is_empty());
    assert_eq!(records[0]["engine"], "exact");
    // The sweep did not run to its end: 1 exact + 6 ours + 6 hnsw_rs when complete.
    assert!(records.len() < 13, "{} records", records.len());
}

/// `aimp bench filter` on a small clustered set, two alternating rounds: a record per engine,
/// case and setting with both rounds' queries/s (the median between them), exact filtered
/// search at recall 1 and exhaustive, and the plot.
#[test]
fn filter_bench_runs_rounds_and_writes_records_and_plot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let set = dir.path().join("set");
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let out = aimp(&[
        "bench",
        "gen",
        "--kind",
        "clustered",
        "--n",
        "3000",
        "--dim",
        "16",
        "--queries",
        "20",
        "--out",
        &path(&set),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = dir.path().join("filter.json");
    let plot = dir.path().join("filter.svg");
    // pgvector beside them where the harness can start PostgreSQL.
    let pg = aimp_store_postgres::harness::server().map(|s| s.fresh_database());
    let mut pgvector = Vec::new();
    if let Some(url) = &pg {
        pgvector = vec!["--pgvector", url.as_str()];
    }
    let out = aimp(
        &[
            &[
                "bench",
                "filter",
                "--base",
                &path(&set.join("base.fvecs")),
                "--query",
                &path(&set.join("query.fvecs")),
                "--selectivity",
                "0.01,0.5",
                "--ef",
                "16,64",
                "--rounds",
                "2",
                "--work",
                &path(&dir.path().join("work")),
                "--out",
                &path(&results),
                "--plot",
                &path(&plot),
            ][..],
            &pgvector,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&results).expect("results")).expect("json");
    // The unfiltered case, then 2 selectivities × 2 correlations; each with ours at its
    // default and 2 efs, in-walk at 2 efs, exact (and pgvector at its default and 2 efs).
    let per_case = if pg.is_some() { 6 + 3 } else { 6 };
    assert_eq!(records.len(), (1 + 2 * 2) * per_case, "{records:#?}");
    let unfiltered: Vec<&Value> = records
        .iter()
        .filter(|r| r["correlation"] == "unfiltered")
        .collect();
    assert_eq!(unfiltered.len(), per_case);
    assert!(
        unfiltered
            .iter()
            .all(|r| r["matched"].as_f64() == Some(1.0))
    );
    if pg.is_some() {
        let pgvector: Vec<&Value> = records
            .iter()
            .filter(|r| r["engine"] == "pgvector")
            .collect();
        assert_eq!(pgvector.len(), 5 * 3);
        // 3,000 items are below the exact threshold: pgvector answers exactly too.
        assert!(
            pgvector.iter().all(|r| r["recall"].as_f64() == Some(1.0)),
            "{pgvector:#?}"
        );
    }
    for r in &records {
        let rounds: Vec<f64> = r["qps_rounds"]
            .as_array()
            .expect("qps_rounds")
            .iter()
            .map(|q| q.as_f64().expect("a number"))
            .collect();
        assert_eq!(rounds.len(), 2, "{r}");
        let qps = r["qps_single"].as_f64().expect("qps");
        assert!(
            rounds.iter().all(|q| *q > 0.0) && rounds.contains(&qps),
            "{r}"
        );
        if r["engine"] == "exact" {
            assert_eq!(r["recall"].as_f64(), Some(1.0), "{r}");
            assert_eq!(r["exhaustive"].as_f64(), Some(1.0), "{r}");
        }
    }
    let svg = std::fs::read_to_string(&plot).expect("svg");
    assert!(
        svg.contains("<svg") && svg.contains("in_walk"),
        "not the filter plot"
    );
    assert!(plot.with_extension("png").exists());

    let out = aimp(&[
        "bench",
        "filter",
        "--base",
        &path(&set.join("base.fvecs")),
        "--query",
        &path(&set.join("query.fvecs")),
        "--rounds",
        "0",
        "--out",
        &path(&results),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--rounds"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
