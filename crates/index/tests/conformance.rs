//! The backend conformance suite against the local directory backend.

#[test]
fn the_local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    sift_index::conformance::run_all(&mut || {
        n += 1;
        sift_index::Location::Local(dir.path().join(format!("c{n}")))
    });
}
