//! `[payment.alipay]` (`SHOP__PAYMENT__ALIPAY__*`): Alipay OpenAPI v2 for one
//! application. The app reads the section with its other settings and calls
//! [`AlipaySettings::load`] then: the keys are read and parsed at start-up, and
//! a missing setting or a bad key stops it with a message naming the setting,
//! never the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::{Alipay, AlipayConfig, ConfigError, PRODUCTION_GATEWAY};
use crate::providers::keys::{PrivateKey, PublicKey};

/// Alipay OpenAPI v2 (`[payment.alipay]`, `SHOP__PAYMENT__ALIPAY__<KEY>`).
/// The keys are read and parsed when the settings load: a missing setting or
/// a bad key stops start-up with a message naming the setting, never the key.
#[derive(Clone, Deserialize)]
pub struct AlipaySettings {
    /// The application's id (`SHOP__PAYMENT__ALIPAY__APP_ID`).
    pub app_id: Option<String>,
    /// A file holding the application's private key, PEM or bare base64,
    /// PKCS#1 or PKCS#8 (`SHOP__PAYMENT__ALIPAY__PRIVATE_KEY_PATH`).
    pub private_key_path: Option<PathBuf>,
    /// A file holding the Alipay public key (not the application's)
    /// (`SHOP__PAYMENT__ALIPAY__ALIPAY_PUBLIC_KEY_PATH`).
    pub alipay_public_key_path: Option<PathBuf>,
    /// The gateway (`SHOP__PAYMENT__ALIPAY__GATEWAY_URL`); by default production's.
    pub gateway_url: Option<String>,
    /// The merchant's Alipay user id (`2088...`); when set, notifications must
    /// name it (`SHOP__PAYMENT__ALIPAY__SELLER_ID`).
    pub seller_id: Option<String>,
    /// The protocol built from the settings above, once they load.
    #[serde(skip)]
    pub protocol: Option<Arc<Alipay>>,
}

impl std::fmt::Debug for AlipaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipaySettings")
            .field("app_id", &self.app_id)
            .field("gateway_url", &self.gateway_url)
            .field("seller_id", &self.seller_id)
            .finish_non_exhaustive()
    }
}

/// A setting's value, unless it is unset or empty.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl AlipaySettings {
    /// Reads the key files and checks every setting.
    pub fn load(&self) -> anyhow::Result<Alipay> {
        let required = |value: Option<&str>, variable: &str| -> anyhow::Result<String> {
            match value.map(str::trim).filter(|v| !v.is_empty()) {
                Some(value) => Ok(value.to_owned()),
                None => anyhow::bail!("{variable} must be set when Alipay is configured"),
            }
        };
        let read = |path: Option<&Path>, variable: &str| -> anyhow::Result<String> {
            let path = path.filter(|p| !p.as_os_str().is_empty()).ok_or_else(|| {
                anyhow::anyhow!("{variable} must be set when Alipay is configured")
            })?;
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{variable}: cannot read {}: {e}", path.display()))
        };
        const APP_ID: &str = "SHOP__PAYMENT__ALIPAY__APP_ID";
        const PRIVATE_KEY: &str = "SHOP__PAYMENT__ALIPAY__PRIVATE_KEY_PATH";
        const PUBLIC_KEY: &str = "SHOP__PAYMENT__ALIPAY__ALIPAY_PUBLIC_KEY_PATH";
        const GATEWAY: &str = "SHOP__PAYMENT__ALIPAY__GATEWAY_URL";
        const SELLER: &str = "SHOP__PAYMENT__ALIPAY__SELLER_ID";
        let app_id = required(self.app_id.as_deref(), APP_ID)?;
        let app_private_key =
            PrivateKey::parse(&read(self.private_key_path.as_deref(), PRIVATE_KEY)?)
                .map_err(|e| anyhow::anyhow!("{PRIVATE_KEY}: {e}"))?;
        let alipay_public_key =
            PublicKey::parse(&read(self.alipay_public_key_path.as_deref(), PUBLIC_KEY)?)
                .map_err(|e| anyhow::anyhow!("{PUBLIC_KEY}: {e}"))?;
        let gateway_url = present(&self.gateway_url)
            .unwrap_or(PRODUCTION_GATEWAY)
            .to_owned();
        let seller_id = present(&self.seller_id).map(str::to_owned);
        Alipay::new(AlipayConfig {
            app_id,
            app_private_key,
            alipay_public_key,
            gateway_url,
            seller_id,
        })
        .map_err(|e| {
            let variable = match e {
                ConfigError::AppId => APP_ID,
                ConfigError::GatewayUrl => GATEWAY,
                ConfigError::SellerId => SELLER,
            };
            anyhow::anyhow!("{variable}: {e}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        format!(
            "{}/tests/fixtures/providers/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    /// The section as the app reads it from `SHOP__PAYMENT__ALIPAY__*`, loaded.
    fn load(env: &[(&str, &str)]) -> anyhow::Result<AlipaySettings> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let mut settings: AlipaySettings =
            crate::providers::settings_from_env("SHOP__PAYMENT__ALIPAY__", env)?;
        settings.protocol = Some(Arc::new(settings.load()?));
        Ok(settings)
    }

    fn alipay_env(overrides: &[(&str, &str)]) -> anyhow::Result<AlipaySettings> {
        let private = fixture("alipay_app_private_pkcs1.b64");
        let public = fixture("alipay_platform_public_spki.pem");
        let mut pairs = vec![
            ("SHOP__PAYMENT__ALIPAY__APP_ID", "2021000000000001"),
            ("SHOP__PAYMENT__ALIPAY__PRIVATE_KEY_PATH", private.as_str()),
            (
                "SHOP__PAYMENT__ALIPAY__ALIPAY_PUBLIC_KEY_PATH",
                public.as_str(),
            ),
        ];
        for (key, value) in overrides {
            pairs.retain(|(k, _)| k != key);
            pairs.push((key, value));
        }
        load(&pairs)
    }

    #[test]
    fn alipay_is_configured_with_its_keys_parsed_at_load() {
        let alipay =
            alipay_env(&[("SHOP__PAYMENT__ALIPAY__SELLER_ID", "2088000000000002")]).unwrap();
        let protocol = alipay.protocol.clone().unwrap();
        assert_eq!(protocol.config().app_id, "2021000000000001");
        assert_eq!(
            protocol.config().seller_id.as_deref(),
            Some("2088000000000002")
        );
        assert_eq!(protocol.config().gateway_url, PRODUCTION_GATEWAY);
        // Nothing of the keys in the settings' debug output (the log may show it).
        let shown = format!("{alipay:?}");
        assert!(!format!("{protocol:?}").contains("MII"), "{shown}");
        assert!(!shown.contains("MII"), "{shown}");
    }

    #[test]
    fn a_missing_alipay_setting_or_a_bad_key_is_named() {
        for (variable, value) in [
            ("SHOP__PAYMENT__ALIPAY__APP_ID", ""),
            ("SHOP__PAYMENT__ALIPAY__APP_ID", "app-one"),
            ("SHOP__PAYMENT__ALIPAY__PRIVATE_KEY_PATH", ""),
            (
                "SHOP__PAYMENT__ALIPAY__PRIVATE_KEY_PATH",
                "/nonexistent/key.pem",
            ),
            ("SHOP__PAYMENT__ALIPAY__ALIPAY_PUBLIC_KEY_PATH", ""),
            (
                "SHOP__PAYMENT__ALIPAY__GATEWAY_URL",
                "ftp://example.com/gateway.do",
            ),
            ("SHOP__PAYMENT__ALIPAY__SELLER_ID", "seller"),
        ] {
            let error = alipay_env(&[(variable, value)])
                .expect_err(variable)
                .to_string();
            assert!(error.contains(variable), "{variable}={value}: {error}");
        }
        // A public key where the private key belongs, an EC key as the Alipay key.
        let public = fixture("alipay_platform_public_spki.pem");
        let ec = fixture("ec_p256_public_spki.pem");
        for (variable, value) in [
            ("SHOP__PAYMENT__ALIPAY__PRIVATE_KEY_PATH", public.as_str()),
            ("SHOP__PAYMENT__ALIPAY__ALIPAY_PUBLIC_KEY_PATH", ec.as_str()),
        ] {
            let error = alipay_env(&[(variable, value)])
                .expect_err(variable)
                .to_string();
            assert!(error.contains(variable), "{error}");
            assert!(!error.contains("MII"), "a key was shown: {error}");
        }
    }
}
