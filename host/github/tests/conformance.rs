//! The GitHub store passes the whole store conformance suite against the REST emulator; every
//! case gets a fresh emulator (an empty repository).

mod emulator;

sentinel_coord::conformance_tests!(|clock| async move {
    let emu = emulator::Emulator::start().await;
    std::sync::Arc::new(
        sentinel_github::GithubStore::connect(emu.config(), clock)
            .await
            .expect("connect to the emulator"),
    ) as std::sync::Arc<dyn sentinel_coord::Store>
});
