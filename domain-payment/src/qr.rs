//! QR codes as SVG, for scan-to-pay.

/// An SVG QR code of `text` (a payment URL).
pub fn svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_payment_url_becomes_an_svg() {
        let svg = super::svg("http://127.0.0.1:8080/sandbox/checkout/019b3f2c").unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.ends_with("</svg>"));
    }
}
