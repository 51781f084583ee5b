//! Builds the browser client (`web/`) that the server embeds, so that
//! `cargo run -- serve` on a fresh clone serves meetings with no other
//! step. npm runs only when the client's sources or lockfile changed (cargo
//! tracks them); the result goes to OUT_DIR and into the binary through
//! the generated `web_assets.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let web = manifest.join("../../web");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let dist = out.join("web");
    for p in [
        "src",
        "public",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "vite.embed.config.ts",
        "tsconfig.json",
    ] {
        println!("cargo:rerun-if-changed={}", web.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=CONCLAVE_WEB_DIST");
    // A client built elsewhere (a packager's, or CI's cache) may be given.
    let built = match std::env::var_os("CONCLAVE_WEB_DIST") {
        Some(d) => PathBuf::from(d),
        None => {
            build(&web, &dist);
            dist
        }
    };
    let mut files = Vec::new();
    collect(&built, &built, &mut files);
    files.sort();
    let mut code = String::from(
        "/// The built web client: (path, contents).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, abs) in &files {
        code.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            abs.display().to_string()
        ));
    }
    code.push_str("];\n");
    fs::write(out.join("web_assets.rs"), code).expect("OUT_DIR is writable");
}

fn run(dir: &Path, args: &[&str]) {
    let status = Command::new("npm")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run npm ({e}): building the web client needs Node.js 20.19+ with npm")
        });
    assert!(status.success(), "`npm {}` in web/ failed", args.join(" "));
}

fn build(web: &Path, dist: &Path) {
    let stamp = web.join("node_modules/.conclave-lock");
    let lock = fs::read(web.join("package-lock.json")).unwrap_or_default();
    if fs::read(&stamp).ok().as_deref() != Some(&lock[..]) {
        run(web, &["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
        let _ = fs::write(&stamp, &lock);
    }
    let out = dist.to_str().expect("OUT_DIR is UTF-8");
    // `npm run build`'s two steps, each told where to write: the app (which
    // empties the directory), then /external_api.js beside it.
    run(
        web,
        &["run", "build:app", "--", "--outDir", out, "--emptyOutDir"],
    );
    run(web, &["run", "build:embed", "--", "--outDir", out]);
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        panic!("no built web client in {}", dir.display());
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, files);
        } else if let Ok(rel) = p.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            files.push((format!("/{rel}"), p));
        }
    }
}
