use std::time::Duration;

use super::*;
use crate::control_plane::store::{Record, Registration};

fn origin() -> Origin {
    Origin::new(
        &[
            "http://127.0.0.1:2379".into(),
            "http://127.0.0.2:2379".into(),
        ],
        "/elbe/",
    )
}

fn state(revision: u64, instances: usize) -> Contents {
    Contents {
        revision: Revision(revision),
        records: (0..instances)
            .map(|n| Versioned {
                revision: Revision(revision),
                record: Record::Registration(Registration::deregistered("web", &format!("i-{n}"))),
            })
            .collect(),
    }
}

fn found(dir: &Path) -> Option<Contents> {
    match LocalCopy::read(dir, &origin()).unwrap() {
        Found::Copy { contents, .. } => Some(contents),
        Found::Missing => None,
        Found::Foreign(other) => panic!("foreign copy {other:?}"),
    }
}

#[test]
fn a_copy_reads_back_whole_and_only_for_its_own_etcd_and_prefix() {
    let dir = tempfile::tempdir().unwrap();
    assert!(found(dir.path()).is_none(), "no copy yet");
    write(dir.path(), origin(), state(7, 3)).unwrap();
    assert_eq!(found(dir.path()), Some(state(7, 3)));
    // The endpoints' order is not another cluster; another prefix or endpoint is.
    let reordered = Origin::new(
        &[
            "http://127.0.0.2:2379".into(),
            "http://127.0.0.1:2379".into(),
        ],
        "/elbe",
    );
    assert!(matches!(
        LocalCopy::read(dir.path(), &reordered).unwrap(),
        Found::Copy { .. }
    ));
    for other in [
        Origin::new(&["http://127.0.0.1:2379".into()], "/elbe"),
        Origin::new(
            &[
                "http://127.0.0.1:2379".into(),
                "http://127.0.0.2:2379".into(),
            ],
            "/other",
        ),
    ] {
        match LocalCopy::read(dir.path(), &other).unwrap() {
            Found::Foreign(was) => assert_eq!(was, origin()),
            found => panic!("{found:?} for {other:?}"),
        }
    }
    let files: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files,
        vec![std::ffi::OsString::from(FILE)],
        "no temporary file left"
    );
}

#[test]
fn a_half_written_temporary_file_is_never_read_and_a_damaged_copy_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), origin(), state(4, 2)).unwrap();
    // What a writer killed mid-write leaves: half of a copy under the temporary name.
    let whole = fs::read(LocalCopy::file(dir.path())).unwrap();
    fs::write(
        dir.path().join(format!(".{FILE}.4242")),
        &whole[..whole.len() / 2],
    )
    .unwrap();
    assert_eq!(found(dir.path()), Some(state(4, 2)));
    write(dir.path(), origin(), state(5, 1)).unwrap();
    assert_eq!(found(dir.path()), Some(state(5, 1)));

    fs::write(LocalCopy::file(dir.path()), &whole[..whole.len() / 2]).unwrap();
    let error = LocalCopy::read(dir.path(), &origin()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("cluster-copy.json: does not read as a copy"),
        "{error}"
    );
    let newer = String::from_utf8(whole)
        .unwrap()
        .replace("\"format\":1", "\"format\":9");
    fs::write(LocalCopy::file(dir.path()), newer).unwrap();
    let error = LocalCopy::read(dir.path(), &origin()).unwrap_err();
    assert!(error.to_string().contains("format 9 is newer"), "{error}");
}

/// Polls (real time: the writer writes on a blocking thread) until the copy in `dir` is `wanted`.
async fn wait_for(dir: &Path, wanted: &Contents) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while found(dir).as_ref() != Some(wanted) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "copy never became {wanted:?}: {:?}",
            found(dir)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_burst_ends_as_its_newest_state_and_a_failed_write_is_tried_again() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    let copy = LocalCopy::start(dir.clone(), origin());
    for revision in 1..=200 {
        copy.keep(state(revision, (revision % 7) as usize));
    }
    wait_for(&dir, &state(200, 200 % 7)).await;

    // The folder cannot be written (a file where it should be): the write fails, and is tried again.
    let blocked = root.path().join("blocked");
    fs::write(&blocked, "not a folder").unwrap();
    let copy = LocalCopy::start(blocked.clone(), origin());
    copy.keep(state(3, 1));
    copy.keep(state(4, 2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while copy.failed_writes() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the write never failed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fs::remove_file(&blocked).unwrap();
    wait_for(&blocked, &state(4, 2)).await;
}
