//! sqlite placeholder.
use crate::database::{
    BackupContext, DbManifest, DumpRequest, RestoreReport, RestoreRequest, StreamSource,
    TargetState,
};
use coffer_core::{Error, ErrorKind, Result};
fn not_yet() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "sqlite backups are not available in this build yet",
    )
}
/// x
pub async fn backup(_ctx: &BackupContext) -> Result<DbManifest> {
    Err(not_yet())
}
/// x
pub async fn probe_target(_m: &DbManifest, _req: &RestoreRequest) -> Result<TargetState> {
    Err(not_yet())
}
/// x
pub async fn restore(
    _src: &StreamSource,
    _m: &DbManifest,
    _req: &RestoreRequest,
) -> Result<RestoreReport> {
    Err(not_yet())
}
/// x
pub async fn dump(
    _src: &StreamSource,
    _m: &DbManifest,
    _req: &DumpRequest,
    _out: &mut (dyn std::io::Write + Send),
) -> Result<()> {
    Err(not_yet())
}
