//! Query-presigned URLs (SigV4) with extra signed query parameters: an upload part's
//! `partNumber` and `uploadId`. rust-s3 0.38's blocking `presign_put` drops its
//! `custom_queries` (the `sync_impl` of `presigned()` in request_trait.rs matches them away;
//! its async twin keeps them), so the URL is composed here from rust-s3's own public signing
//! steps (canonical request, string to sign, signing key). Remove once a release fixes it.

use ::s3::error::S3Error;
use ::s3::signing;
use ::s3::Region;
use hmac::{Hmac, Mac};
use http::header::{HeaderMap, HeaderValue, HOST};
use sha2::Sha256;
use time::OffsetDateTime;
use url::Url;

/// Who signs: the bucket's keys (and a session token with temporary credentials).
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub token: Option<&'a String>,
    pub region: &'a Region,
}

impl Signer<'_> {
    /// `method` on `object_url` (no query of its own) with `queries` signed in, valid for
    /// `expiry_secs` from `now`. Only the `host` header is signed: the holder may send any body.
    pub fn presign(
        &self,
        method: &str,
        object_url: &str,
        queries: &[(&str, &str)],
        now: OffsetDateTime,
        expiry_secs: u32,
    ) -> Result<String, S3Error> {
        let mut unsigned = format!(
            "{object_url}{}",
            signing::authorization_query_params_no_sig(
                self.access_key,
                &now,
                self.region,
                expiry_secs,
                None,
                self.token,
            )?
        );
        for (k, v) in queries {
            unsigned.push_str(&format!(
                "&{}={}",
                signing::uri_encode(k, true),
                signing::uri_encode(v, true)
            ));
        }
        let url = Url::parse(&unsigned)?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(S3Error::HttpFailWithBody(0, "no host in the URL".into())),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::from_str(&host)
                .map_err(|_| S3Error::HttpFailWithBody(0, "an invalid host".into()))?,
        );
        let canonical = signing::canonical_request(method, &url, &headers, "UNSIGNED-PAYLOAD")?;
        let to_sign = signing::string_to_sign(&now, self.region, &canonical)?;
        let key = signing::signing_key(&now, self.secret_key, self.region, "s3")?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key");
        mac.update(to_sign.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        Ok(format!("{unsigned}&X-Amz-Signature={signature}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in AWS's "Authenticating Requests: Using Query Parameters (AWS Signature
    /// Version 4)": a GET of examplebucket/test.txt on 2013-05-24, valid for a day.
    #[test]
    fn the_aws_documentation_example_signs_alike() {
        let region = Region::UsEast1;
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let signer = Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: secret,
            token: None,
            region: &region,
        };
        let at = OffsetDateTime::from_unix_timestamp(1_369_353_600).unwrap();
        let url = signer
            .presign(
                "GET",
                "https://examplebucket.s3.amazonaws.com/test.txt",
                &[],
                at,
                86_400,
            )
            .unwrap();
        assert!(
            url.ends_with(
                "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{url}"
        );
        // Extra queries are part of what is signed: another part number, another signature.
        let part = |n: &str| {
            signer
                .presign(
                    "PUT",
                    "https://examplebucket.s3.amazonaws.com/test.txt",
                    &[("partNumber", n), ("uploadId", "abc")],
                    at,
                    60,
                )
                .unwrap()
        };
        let (one, two) = (part("1"), part("2"));
        assert!(
            one.contains("&partNumber=1&uploadId=abc&X-Amz-Signature="),
            "{one}"
        );
        assert_ne!(one.rsplit('=').next(), two.rsplit('=').next());
    }
}
