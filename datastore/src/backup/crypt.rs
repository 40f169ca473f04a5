//! The backup stream's encryption, in the format of
//! `openssl enc -aes-256-cbc -md sha512 -pbkdf2 -iter 10000 -salt`, so an
//! operator decrypts a backup by hand with
//! `openssl enc -d -aes-256-cbc -md sha512 -pbkdf2 -iter 10000 -salt -pass ...`:
//!
//! - `Salted__` and 8 random bytes of salt;
//! - key and IV: PBKDF2-HMAC-SHA512(pass, salt, 10000 rounds), 32 + 16
//!   bytes;
//! - AES-256-CBC with PKCS#7 padding.
//!
//! Both sides are `Write` adapters holding at most one block and the
//! caller's chunk: the stream is never held whole in memory.

use std::io::{self, Write};

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

/// openssl's salt header.
const MAGIC: &[u8; 8] = b"Salted__";
/// PBKDF2 rounds (`-iter 10000`).
pub const ITERATIONS: u32 = 10_000;
const BLOCK: usize = 16;

fn derive(pass: &[u8], salt: &[u8; 8]) -> ([u8; 32], [u8; 16]) {
    let mut out = [0u8; 48];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(pass, salt, ITERATIONS, &mut out);
    let mut key = [0u8; 32];
    let mut iv = [0u8; 16];
    key.copy_from_slice(&out[..32]);
    iv.copy_from_slice(&out[32..]);
    (key, iv)
}

/// Encrypts what is written to it into `inner`; [`Encryptor::finish`]
/// writes the padded last block.
pub struct Encryptor<W: Write> {
    inner: W,
    cipher: Enc,
    pending: Vec<u8>,
}

impl<W: Write> Encryptor<W> {
    /// Starts the stream with a random salt (the header is written now).
    pub fn new(pass: &[u8], inner: W) -> io::Result<Self> {
        let mut salt = [0u8; 8];
        getrandom::getrandom(&mut salt)
            .map_err(|e| io::Error::other(format!("no randomness for the salt: {e}")))?;
        Self::with_salt(pass, salt, inner)
    }

    fn with_salt(pass: &[u8], salt: [u8; 8], mut inner: W) -> io::Result<Self> {
        let (key, iv) = derive(pass, &salt);
        inner.write_all(MAGIC)?;
        inner.write_all(&salt)?;
        Ok(Self {
            inner,
            cipher: Enc::new(&key.into(), &iv.into()),
            pending: Vec::with_capacity(BLOCK),
        })
    }

    /// Pads, writes the last block and hands `inner` back.
    pub fn finish(mut self) -> io::Result<W> {
        let pad = BLOCK - self.pending.len();
        self.pending.resize(BLOCK, pad as u8);
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(&self.pending);
        self.cipher.encrypt_block_mut((&mut block).into());
        self.inner.write_all(&block)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let taken = data.len();
        let mut out = Vec::with_capacity(data.len() + BLOCK);
        if !self.pending.is_empty() {
            let need = BLOCK - self.pending.len();
            let n = need.min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() < BLOCK {
                return Ok(taken);
            }
            out.extend_from_slice(&self.pending);
            self.pending.clear();
        }
        let whole = data.len() / BLOCK * BLOCK;
        out.extend_from_slice(&data[..whole]);
        self.pending.extend_from_slice(&data[whole..]);
        for block in out.chunks_exact_mut(BLOCK) {
            self.cipher.encrypt_block_mut(block.into());
        }
        self.inner.write_all(&out)?;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts what is written to it into `inner`. The last block is held
/// back until [`Decryptor::finish`], which checks the padding: a wrong
/// pass or a truncated stream is an error there, never silent garbage
/// (a wrong pass passes the padding check about once in 256; the gzip
/// inside fails its own check then).
pub struct Decryptor<W: Write> {
    inner: W,
    pass: Vec<u8>,
    header: Vec<u8>,
    cipher: Option<Dec>,
    pending: Vec<u8>,
}

impl<W: Write> Decryptor<W> {
    /// A decryptor for `pass`.
    pub fn new(pass: &[u8], inner: W) -> Self {
        Self {
            inner,
            pass: pass.to_vec(),
            header: Vec::with_capacity(16),
            cipher: None,
            pending: Vec::new(),
        }
    }

    /// What has been decrypted so far goes to `inner`: for a reader that
    /// drains it.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Checks and strips the padding of the last block; hands `inner` back.
    pub fn finish(mut self) -> io::Result<W> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
        if self.cipher.is_none() {
            return Err(bad("the encrypted stream ends before its salt header"));
        }
        if self.pending.len() != BLOCK {
            return Err(bad("the encrypted stream is truncated (not whole blocks)"));
        }
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(&self.pending);
        self.cipher
            .as_mut()
            .expect("checked above")
            .decrypt_block_mut((&mut block).into());
        let pad = block[BLOCK - 1] as usize;
        if pad == 0 || pad > BLOCK || block[BLOCK - pad..].iter().any(|b| *b as usize != pad) {
            return Err(bad("bad padding: wrong key, or the stream is damaged"));
        }
        self.inner.write_all(&block[..BLOCK - pad])?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Decryptor<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let taken = data.len();
        if self.cipher.is_none() {
            let n = (16 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() < 16 {
                return Ok(taken);
            }
            if &self.header[..8] != MAGIC {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not an encrypted backup (no \"Salted__\" header)",
                ));
            }
            let mut salt = [0u8; 8];
            salt.copy_from_slice(&self.header[8..16]);
            let (key, iv) = derive(&self.pass, &salt);
            self.cipher = Some(Dec::new(&key.into(), &iv.into()));
        }
        self.pending.extend_from_slice(data);
        // Keep the last whole block (it may be the padded one).
        let keep = match self.pending.len() % BLOCK {
            0 => BLOCK.min(self.pending.len()),
            r => r,
        };
        let ready = self.pending.len() - keep;
        if ready > 0 {
            let mut out: Vec<u8> = self.pending.drain(..ready).collect();
            let cipher = self.cipher.as_mut().expect("set above");
            for block in out.chunks_exact_mut(BLOCK) {
                cipher.decrypt_block_mut(block.into());
            }
            self.inner.write_all(&out)?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    pub(crate) const PASS: &[u8] = b"a backup key, with spaces";

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn encrypt_in_chunks(plain: &[u8], chunk: usize) -> Vec<u8> {
        let mut e = Encryptor::new(PASS, Vec::new()).unwrap();
        for c in plain.chunks(chunk.max(1)) {
            e.write_all(c).unwrap();
        }
        e.finish().unwrap()
    }

    fn decrypt_in_chunks(sealed: &[u8], pass: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        let mut d = Decryptor::new(pass, Vec::new());
        for c in sealed.chunks(chunk.max(1)) {
            d.write_all(c)?;
        }
        d.finish()
    }

    /// The cipher and key derivation the format promises openssl users.
    const OPENSSL_ENC: [&str; 7] = [
        "-aes-256-cbc",
        "-md",
        "sha512",
        "-pbkdf2",
        "-iter",
        "10000",
        "-salt",
    ];

    /// openssl with the pass in its environment (not in its argv).
    pub(crate) fn openssl(decrypt: bool, input: &[u8]) -> std::process::Output {
        let mut args = vec!["enc"];
        if decrypt {
            args.push("-d");
        }
        args.extend(OPENSSL_ENC);
        args.extend(["-pass", "env:BACKUP_PASS"]);
        let mut child = Command::new("openssl")
            .args(&args)
            .env("BACKUP_PASS", std::str::from_utf8(PASS).unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl is installed");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        out
    }

    #[test]
    fn round_trips_whatever_the_chunking() {
        for size in [0, 1, 15, 16, 17, 100_003] {
            let plain = data(size);
            for (ec, dc) in [(1, 1), (7, 16), (1000, 33)] {
                let sealed = encrypt_in_chunks(&plain, ec);
                assert_eq!(sealed.len(), 16 + (size / 16 + 1) * 16);
                assert_eq!(
                    decrypt_in_chunks(&sealed, PASS, dc).unwrap(),
                    plain,
                    "size {size}, chunks {ec}/{dc}"
                );
            }
        }
    }

    #[test]
    fn openssl_decrypts_ours_and_we_decrypt_openssls() {
        let plain = data(70_001);
        let sealed = encrypt_in_chunks(&plain, 4093);
        let out = openssl(true, &sealed);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, plain);
        let theirs = openssl(false, &plain);
        assert!(
            theirs.status.success(),
            "{}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        assert_eq!(&theirs.stdout[..8], MAGIC);
        assert_eq!(
            decrypt_in_chunks(&theirs.stdout, PASS, 1000).unwrap(),
            plain
        );
    }

    #[test]
    fn a_wrong_key_a_truncated_stream_or_plain_data_is_refused_by_name() {
        let plain = data(5000);
        // A fixed salt: a wrong key passes the padding check once in 256
        // salts, and this test must not depend on the draw.
        let mut e = Encryptor::with_salt(PASS, [9; 8], Vec::new()).unwrap();
        e.write_all(&plain).unwrap();
        let sealed = e.finish().unwrap();
        let e = decrypt_in_chunks(&sealed, b"another key", 512).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("wrong key"), "{e}");
        let e = decrypt_in_chunks(&sealed[..sealed.len() - 5], PASS, 512).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = decrypt_in_chunks(&sealed[..10], PASS, 512).unwrap_err();
        assert!(e.to_string().contains("before its salt header"), "{e}");
        let e = decrypt_in_chunks(&plain, PASS, 512).unwrap_err();
        assert!(e.to_string().contains("Salted__"), "{e}");
    }

    #[test]
    fn the_same_pass_and_salt_give_openssls_key_and_iv() {
        // openssl enc -P prints the key and IV it derives.
        let out = Command::new("openssl")
            .arg("enc")
            .args(OPENSSL_ENC)
            .args(["-S", "0102030405060708", "-pass", "env:BACKUP_PASS", "-P"])
            .env("BACKUP_PASS", std::str::from_utf8(PASS).unwrap())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let (key, iv) = derive(PASS, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
        assert!(text.contains(&format!("key={}", hex(&key))), "{text}");
        assert!(text.contains(&format!("iv ={}", hex(&iv))), "{text}");
    }
}
