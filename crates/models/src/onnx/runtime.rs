//! Finding and starting ONNX Runtime.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use super::editor::{MS_DOMAIN, ONNX_OPSET};
use super::encoder::{self, GraphSpec};
use super::ort_err;
use crate::error::{ModelError, Result};

/// Environment variable naming the `libonnxruntime.so` to load.
pub const LIBRARY_ENV: &str = "SIFT_ONNXRUNTIME";

/// Where the runtime library was found, and how.
#[derive(Debug, Clone)]
pub struct RuntimeLibrary {
    pub path: PathBuf,
    /// `SIFT_ONNXRUNTIME`, `next to the executable` or `built-in default`.
    pub source: &'static str,
}

/// The ONNX Runtime library sift would load, if any: `$SIFT_ONNXRUNTIME`, else
/// `libonnxruntime.so` beside the `sift` executable, else the path `scripts/setup.sh` installs
/// to (recorded at build time).
pub fn runtime_library() -> Option<RuntimeLibrary> {
    if let Some(p) = std::env::var_os(LIBRARY_ENV).filter(|p| !p.is_empty()) {
        return Some(RuntimeLibrary {
            path: PathBuf::from(p),
            source: "SIFT_ONNXRUNTIME",
        });
    }
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("libonnxruntime.so")))
        .filter(|p| p.is_file());
    if let Some(path) = beside_exe {
        return Some(RuntimeLibrary {
            path,
            source: "next to the executable",
        });
    }
    option_env!("SIFT_DEFAULT_ONNXRUNTIME")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .map(|path| RuntimeLibrary {
            path,
            source: "built-in default",
        })
}

fn environment() -> Result<&'static Environment> {
    static ENV: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = runtime_library().ok_or_else(|| {
            format!(
                "ONNX Runtime library not found: run scripts/setup.sh, or set {LIBRARY_ENV} to a libonnxruntime.so"
            )
        })?;
        load(&lib.path)
    })
    .as_ref()
    .map_err(|e| ModelError::Runtime(e.clone()))
}

fn load(path: &Path) -> std::result::Result<Environment, String> {
    // ONNX Runtime prints its own copy of every failure to stderr; sift returns them as errors,
    // so only fatal ones are printed unless the user asks (`ORT_LOG=warning`, ...).
    if std::env::var_os("ORT_LOG").is_none() {
        std::env::set_var("ORT_LOG", "fatal");
    }
    ort::init_from(path)
        .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?
        .with_name("sift")
        .build()
        .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))
}

/// Compiles the graph for `spec` into a session running on `threads` intra-op threads.
pub(super) fn session(spec: &GraphSpec, threads: usize) -> Result<Session> {
    let env = environment()?;
    let g = encoder::build(spec).map_err(ort_err)?;
    let mut model = ort::editor::Model::new([
        ort::editor::Opset::new(ort::editor::ONNX_DOMAIN, ONNX_OPSET).map_err(ort_err)?,
        ort::editor::Opset::new(MS_DOMAIN, 1).map_err(ort_err)?,
    ])
    .map_err(ort_err)?;
    model.set_graph(g).map_err(ort_err)?;
    let builder = SessionBuilder::new(env)
        .map_err(ort_err)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(ort_err)?
        .with_intra_threads(threads.max(1))
        .map_err(ort_err)?
        .with_inter_threads(1)
        .map_err(ort_err)?;
    model.into_session(&builder).map_err(ort_err)
}
