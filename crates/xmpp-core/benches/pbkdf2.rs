//! PBKDF2-HMAC at the SCRAM iteration count the server stores (4096): the
//! cost of every SASL PLAIN login, and of every password set. Compares
//! aws-lc with RustCrypto's `pbkdf2` + `hmac` + `sha1`/`sha2` (which use
//! the CPU's SHA extensions through `cpufeatures`), to choose the faster.
//!
//! `cargo bench -p xmpp-core --bench pbkdf2`

use std::num::NonZeroU32;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const ITERATIONS: u32 = 4096;
const PASSWORD: &[u8] = b"correct horse battery staple";
const SALT: &[u8] = b"0123456789abcdef";

fn aws_lc(alg: aws_lc_rs::pbkdf2::Algorithm, out: &mut [u8]) {
    let rounds = NonZeroU32::new(ITERATIONS).expect("non-zero");
    aws_lc_rs::pbkdf2::derive(alg, rounds, SALT, PASSWORD, out);
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pbkdf2-4096");
    g.bench_function(BenchmarkId::new("aws-lc", "sha256"), |b| {
        let mut out = [0u8; 32];
        b.iter(|| aws_lc(aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256, &mut out));
    });
    g.bench_function(BenchmarkId::new("rustcrypto", "sha256"), |b| {
        let mut out = [0u8; 32];
        b.iter(|| pbkdf2::pbkdf2_hmac::<sha2::Sha256>(PASSWORD, SALT, ITERATIONS, &mut out));
    });
    g.bench_function(BenchmarkId::new("aws-lc", "sha1"), |b| {
        let mut out = [0u8; 20];
        b.iter(|| aws_lc(aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA1, &mut out));
    });
    g.bench_function(BenchmarkId::new("rustcrypto", "sha1"), |b| {
        let mut out = [0u8; 20];
        b.iter(|| pbkdf2::pbkdf2_hmac::<sha1::Sha1>(PASSWORD, SALT, ITERATIONS, &mut out));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
