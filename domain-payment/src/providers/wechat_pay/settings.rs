//! `[payment.wechat_pay]` (`SHOP__PAYMENT__WECHAT_PAY__*`): WeChat Pay API v3
//! for one merchant. Read when the app reads its settings: every setting present,
//! the key files loaded and the keys parsed, or start-up stops with a message
//! naming the setting. Neither a key nor the APIv3 key is ever shown (the
//! loaded protocol's `Debug` hides them).

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ApiV3Key, PRODUCTION_BASE_URL, PlatformKey, WechatPay, WechatPayConfig};
use crate::providers::keys::{PrivateKey, PublicKey};

/// WeChat Pay, configured and loaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawWechatPaySettings")]
pub struct WechatPaySettings {
    pub protocol: Arc<WechatPay>,
}

/// The settings as written.
#[derive(Deserialize)]
struct RawWechatPaySettings {
    mch_id: Option<String>,
    app_id: Option<String>,
    merchant_serial_no: Option<String>,
    private_key_path: Option<String>,
    apiv3_key: Option<SecretString>,
    public_key_path: Option<String>,
    public_key_id: Option<String>,
    base_url: Option<String>,
}

/// `SHOP__PAYMENT__WECHAT_PAY__MCH_ID (payment.wechat_pay.mch_id)`.
fn name(key: &str) -> String {
    format!(
        "SHOP__PAYMENT__WECHAT_PAY__{} (payment.wechat_pay.{key})",
        key.to_uppercase()
    )
}

fn required(value: Option<String>, key: &str) -> Result<String, String> {
    value
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{} is required when WeChat Pay is configured", name(key)))
}

fn read_file(path: &str, key: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|error| format!("{}: cannot read {path}: {error}", name(key)))
}

impl TryFrom<RawWechatPaySettings> for WechatPaySettings {
    type Error = String;

    fn try_from(raw: RawWechatPaySettings) -> Result<Self, String> {
        let mch_id = required(raw.mch_id, "mch_id")?;
        let app_id = required(raw.app_id, "app_id")?;
        let merchant_serial_no = required(raw.merchant_serial_no, "merchant_serial_no")?;
        let private_key_path = required(raw.private_key_path, "private_key_path")?;
        let public_key_path = required(raw.public_key_path, "public_key_path")?;
        let public_key_id = required(raw.public_key_id, "public_key_id")?;
        let apiv3_key = raw
            .apiv3_key
            .filter(|key| !key.expose_secret().is_empty())
            .ok_or_else(|| {
                format!(
                    "{} is required when WeChat Pay is configured",
                    name("apiv3_key")
                )
            })?;
        let base_url = raw
            .base_url
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| PRODUCTION_BASE_URL.to_owned());
        let merchant_private_key =
            PrivateKey::parse(&read_file(&private_key_path, "private_key_path")?)
                .map_err(|error| format!("{}: {error}", name("private_key_path")))?;
        let public_key = PublicKey::parse(&read_file(&public_key_path, "public_key_path")?)
            .map_err(|error| format!("{}: {error}", name("public_key_path")))?;
        let apiv3_key = ApiV3Key::new(apiv3_key.expose_secret())
            .map_err(|error| format!("{}: {error}", name("apiv3_key")))?;
        let protocol = WechatPay::new(WechatPayConfig {
            mch_id,
            app_id,
            merchant_serial_no,
            merchant_private_key,
            apiv3_key,
            platform_keys: vec![PlatformKey {
                id: public_key_id,
                key: public_key,
            }],
            base_url,
        })
        .map_err(|error| {
            use super::ConfigError as E;
            let key = match error {
                E::MchId => "mch_id",
                E::AppId => "app_id",
                E::MerchantSerialNo => "merchant_serial_no",
                E::PlatformKeyId | E::NoPlatformKey => "public_key_id",
                E::BaseUrl => "base_url",
            };
            format!("{}: {error}", name(key))
        })?;
        Ok(Self {
            protocol: Arc::new(protocol),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::WechatPaySettings;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers/");
    const APIV3_KEY: &str = "0123456789abcdefghijABCDEFGHIJ01";

    fn load(env: Vec<(String, String)>) -> Result<WechatPaySettings, serde_json::Error> {
        crate::providers::settings_from_env("SHOP__PAYMENT__WECHAT_PAY__", env)
    }

    fn settings(edit: &[(&str, Option<&str>)]) -> Result<WechatPaySettings, serde_json::Error> {
        let merchant = format!("{FIXTURES}wechat_merchant_private_pkcs8.pem");
        let platform = format!("{FIXTURES}wechat_platform_public_spki.pem");
        let mut env: Vec<(String, String)> = [
            ("MCH_ID", "1900000001"),
            ("APP_ID", "wxd678efh567hg6787"),
            (
                "MERCHANT_SERIAL_NO",
                "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
            ),
            ("PRIVATE_KEY_PATH", merchant.as_str()),
            ("APIV3_KEY", APIV3_KEY),
            ("PUBLIC_KEY_PATH", platform.as_str()),
            (
                "PUBLIC_KEY_ID",
                "PUB_KEY_ID_0119000000012025013100000000000001",
            ),
        ]
        .iter()
        .map(|(k, v)| (format!("SHOP__PAYMENT__WECHAT_PAY__{k}"), v.to_string()))
        .collect();
        for (key, value) in edit {
            let variable = format!("SHOP__PAYMENT__WECHAT_PAY__{key}");
            env.retain(|(k, _)| *k != variable);
            if let Some(value) = value {
                env.push((variable, value.to_string()));
            }
        }
        load(env)
    }

    #[test]
    fn a_complete_section_loads_the_keys_and_never_shows_them() {
        let s = settings(&[]).unwrap();
        let config = s.protocol.config();
        assert_eq!(config.mch_id, "1900000001");
        assert_eq!(config.base_url, "https://api.mch.weixin.qq.com");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains(APIV3_KEY) && !shown.contains("MII"),
            "{shown}"
        );
        let s = settings(&[("BASE_URL", Some("http://127.0.0.1:9"))]).unwrap();
        assert_eq!(s.protocol.config().base_url, "http://127.0.0.1:9");
    }

    #[test]
    fn a_missing_setting_or_a_bad_key_stops_start_up_naming_it() {
        let elsewhere = format!("{FIXTURES}nothing-here.pem");
        let private_as_public = format!("{FIXTURES}wechat_platform_private_pkcs8.pem");
        let small = format!("{FIXTURES}small_1024_private_pkcs8.pem");
        let ec = format!("{FIXTURES}ec_p256_public_spki.pem");
        let cases: [(&str, Option<&str>, &str); 9] = [
            ("MCH_ID", None, "SHOP__PAYMENT__WECHAT_PAY__MCH_ID"),
            ("APP_ID", Some(""), "SHOP__PAYMENT__WECHAT_PAY__APP_ID"),
            ("APIV3_KEY", None, "SHOP__PAYMENT__WECHAT_PAY__APIV3_KEY"),
            (
                "APIV3_KEY",
                Some("short"),
                "SHOP__PAYMENT__WECHAT_PAY__APIV3_KEY",
            ),
            (
                "PUBLIC_KEY_ID",
                None,
                "SHOP__PAYMENT__WECHAT_PAY__PUBLIC_KEY_ID",
            ),
            (
                "PRIVATE_KEY_PATH",
                Some(&elsewhere),
                "SHOP__PAYMENT__WECHAT_PAY__PRIVATE_KEY_PATH",
            ),
            (
                "PRIVATE_KEY_PATH",
                Some(&small),
                "SHOP__PAYMENT__WECHAT_PAY__PRIVATE_KEY_PATH",
            ),
            (
                "PUBLIC_KEY_PATH",
                Some(&private_as_public),
                "SHOP__PAYMENT__WECHAT_PAY__PUBLIC_KEY_PATH",
            ),
            (
                "PUBLIC_KEY_PATH",
                Some(&ec),
                "SHOP__PAYMENT__WECHAT_PAY__PUBLIC_KEY_PATH",
            ),
        ];
        for (key, value, named) in cases {
            let error = settings(&[(key, value)]).unwrap_err().to_string();
            assert!(error.contains(named), "{key}={value:?}: {error}");
            assert!(
                !error.contains(APIV3_KEY) && !error.contains("MII"),
                "{error}"
            );
        }
        let error = settings(&[("BASE_URL", Some("https://api.mch.weixin.qq.com/v3"))])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("SHOP__PAYMENT__WECHAT_PAY__BASE_URL"),
            "{error}"
        );
    }
}
