//! Links the test binaries with an rpath to the directory of the libpython that pyo3 linked
//! against (the interpreter found at build time: `PYO3_PYTHON`, else `python3` on `PATH`).
//!
//! Without it the dynamic loader picks the first `libpython3.X.so.1.0` on its default path,
//! which on this machine is Debian's `/usr/lib` build (3.11.2) rather than pyenv's 3.11.7 the
//! venv was made from: a different standard library under the venv's compiled wheels.

fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
