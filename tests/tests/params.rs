//! Parameters and prepared statements through the binaries a user runs: a
//! real `sbnode` under the saas bundle, `scratchbird_net::Client` and `sb sql`
//! over QUIC. A value travels beside the text and is one literal whatever it
//! holds; the node keeps compiled statements by text and values, so a second
//! value never gets the first one's answer; the attestation signs the
//! values, so none can be swapped on the way; and a principal's rows, columns
//! and masks are what they are for the same statement written out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_net::attest;
use scratchbird_net::rpc::{Query, Request, Response};
use scratchbird_net::{Client, ClientError, Credentials, TransportLimits};
use scratchbird_tests::{NodeOpts, Setup, load_saas_demo, ok, repo, sb, sb_command, setup, text};
use scratchbird_types::Value;
use std::io::Write;

fn saas() -> NodeOpts {
    NodeOpts {
        bundle: Some(repo().join("examples/bundles/saas")),
        ..NodeOpts::default()
    }
}

/// The rows of `sql` with `params` as text lines (`a|b`), or the error.
async fn rows(c: &Client, sql: &str, params: &[Option<&str>]) -> Result<Vec<String>, String> {
    let params: Vec<Option<String>> = params.iter().map(|p| p.map(str::to_owned)).collect();
    let mut r = c
        .query_with(sql, &params, 0, None)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    loop {
        match r.next().await {
            Ok(Some(Response::Batch(b))) => {
                for row in b.rows().unwrap() {
                    out.push(
                        row.iter()
                            .map(|v| match v {
                                Value::Text(t) => t.clone(),
                                v => v.to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join("|"),
                    );
                }
            }
            Ok(Some(Response::Error(e))) | Err(ClientError::Rpc(e)) => return Err(e.display()),
            Ok(Some(_)) => {}
            Ok(None) => return Ok(out),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[test]
fn values_travel_beside_the_text_signed_and_under_the_bundle() {
    let s = setup(&["admin", "alice", "sam"], saas());
    load_saas_demo(&s);
    over_the_client(&s);
    through_sb(&s);
}

/// `scratchbird_net::Client::query_with`: values, the statement cache, the
/// errors, and a value swapped after it was signed.
fn over_the_client(s: &Setup) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let creds = |u: &str| {
        Credentials::load(
            &s.certs.join(format!("{u}.crt")),
            &s.certs.join(format!("{u}.key")),
            &s.certs.join("ca.crt"),
        )
        .unwrap()
    };
    let limits = TransportLimits::default();
    rt.block_on(async {
        let alice = Client::connect(s.node.client_addr, &creds("alice"), &limits)
            .await
            .unwrap();
        let admin = Client::connect(s.node.client_addr, &creds("admin"), &limits)
            .await
            .unwrap();
        let by_id = "SELECT id, name FROM customers WHERE id = $1";
        // the same text with other values, each twice (the second from the
        // node's statement cache): each value its own answer; customer 4 is
        // tenant 2's, which alice does not see
        for _ in 0..2 {
            assert_eq!(
                rows(&alice, by_id, &[Some("1")]).await.unwrap(),
                ["1|Acme Rockets"]
            );
            assert_eq!(rows(&alice, by_id, &[Some("4")]).await.unwrap(), [""; 0]);
            assert_eq!(
                rows(&admin, by_id, &[Some("4")]).await.unwrap(),
                ["4|Dyne Dynamics"]
            );
        }
        // a value is one literal whatever it holds
        let by_name = "SELECT count(*) FROM customers WHERE name = $1 OR name = $2";
        assert_eq!(
            rows(&admin, by_name, &[Some("x' OR '1'='1"), Some("Eon Energy")])
                .await
                .unwrap(),
            ["1"]
        );
        assert_eq!(
            rows(
                &admin,
                "SELECT $1::int IS NULL, $2 || '!'",
                &[None, Some("a'b")]
            )
            .await
            .unwrap(),
            ["TRUE|a'b!"]
        );
        // a value that is not of its place's type, a missing one, a spare one,
        // values beside two statements
        let e = rows(&admin, by_id, &[Some("one")]).await.unwrap_err();
        assert!(e.contains("'one' is not a valid BIGINT"), "{e}");
        let e = rows(&admin, "SELECT $2", &[Some("1")]).await.unwrap_err();
        assert!(e.contains("there is no parameter $2"), "{e}");
        let e = rows(&admin, by_id, &[Some("1"), Some("2")])
            .await
            .unwrap_err();
        assert!(e.contains("gives 2 parameter values"), "{e}");
        let e = rows(&admin, "SELECT $1; SELECT 2", &[Some("1")])
            .await
            .unwrap_err();
        assert!(e.contains("holds one statement"), "{e}");
        let e = rows(&admin, "CREATE TABLE p (a INT DEFAULT $1)", &[Some("1")])
            .await
            .unwrap_err();
        assert!(e.contains("parameters are taken by"), "{e}");
        // an INSERT's values, read back
        assert_eq!(
            rows(
                &admin,
                "INSERT INTO invoices VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, amount, issued",
                &[
                    Some("900"),
                    Some("1"),
                    Some("1"),
                    Some("12.5"),
                    Some("sent"),
                    Some("2026-12-01")
                ],
            )
            .await
            .unwrap(),
            ["900|12.50|DATE '2026-12-01'"]
        );

        // the attestation signs the values: a request whose values differ from
        // those signed is refused before it runs
        let signed = vec![Some("1".to_owned())];
        let att = alice
            .attestation(attest::request_digest(by_id, None, 0, &signed), 0)
            .unwrap()
            .unwrap();
        let mut r = alice
            .send(&Request::Query(Query {
                sql: by_id.into(),
                deadline_ms: 0,
                context: None,
                attestation: Some(Box::new(att)),
                params: vec![Some("4".to_owned())],
            }))
            .await
            .unwrap();
        let refused = loop {
            match r.next().await {
                Ok(Some(Response::Error(e))) | Err(ClientError::Rpc(e)) => break e.display(),
                Ok(Some(Response::Batch(_))) => panic!("a swapped value ran"),
                Ok(Some(_)) => {}
                Ok(None) => panic!("a swapped value was answered"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(refused.contains("signs another request"), "{refused}");
    });
}

/// `sb sql`: PREPARE and EXECUTE, and the shell's `\bind`.
fn through_sb(s: &Setup) {
    // PREPARE and EXECUTE through sb: alice's rows, sam's masks, as written out
    let prepared = "PREPARE c (bigint) AS SELECT id, email FROM customers WHERE id = $1; \
                    EXECUTE c (1); EXECUTE c (4); DEALLOCATE c";
    assert_eq!(
        ok(&sb(
            &s.node,
            &s.certs,
            "alice",
            &["--format", "csv", "-c", prepared]
        )),
        "id,email\n1,ops@acme.test\nid,email\n"
    );
    let sam = ok(&sb(
        &s.node,
        &s.certs,
        "sam",
        &["--format", "csv", "-c", prepared],
    ));
    let lines: Vec<&str> = sam.lines().collect();
    assert_eq!(lines.len(), 4, "{sam}");
    for l in [lines[1], lines[3]] {
        assert!(l.contains(",tok_") && !l.contains('@'), "masked: {sam}");
    }
    // the statement written out gives sam the same tokens
    let written = ok(&sb(
        &s.node,
        &s.certs,
        "sam",
        &[
            "--format",
            "csv",
            "-c",
            "SELECT id, email FROM customers WHERE id IN (1, 4) ORDER BY id",
        ],
    ));
    assert_eq!(
        written.lines().skip(1).collect::<Vec<_>>(),
        [lines[1], lines[3]]
    );

    // the shell's \bind: values for the next statement only
    let mut child = sb_command(&s.node, &s.certs, "alice", &["--format", "csv"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"\\bind 'Bolt Bikes' 2\nSELECT id FROM customers WHERE name = $1 AND id = $2;\nSELECT $1;\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(stdout, "id\n2\n", "{stderr}");
    assert!(stderr.contains("there is no parameter $1"), "{stderr}");
}
