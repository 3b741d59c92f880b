//! llama.cpp's `llama_ftype` codes and their quantization labels.
//!
//! `general.file_type` holds a `llama_ftype` number; the dashboard shows it as the label users
//! know from file names (`Q4_K_M`, `IQ2_XS`, `BF16`). The original dashboard's table was wrong
//! (Q8_0 shown as Q5_1, IQ*/BF16/TQ* unknown), so the whole table lives here, in one place,
//! tested code by code.

/// The quantization label for a `llama_ftype` code, or `None` for codes that are unknown or
/// were never written to GGUF files (5 and 6, `Q4_2`/`Q4_3`, were removed before GGUF).
///
/// Codes 33–35 (`Q4_0_4_4`, `Q4_0_4_8`, `Q4_0_8_8`) were removed from llama.cpp later, but
/// files carrying them exist, so they keep their names.
#[must_use]
pub fn quantization_name(file_type: u32) -> Option<&'static str> {
    let name = match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_1_SOME_F16",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        33 => "Q4_0_4_4",
        34 => "Q4_0_4_8",
        35 => "Q4_0_8_8",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    };
    Some(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::quantization_name;

    #[test]
    fn table_matches_llama_ftype() {
        let expected = [
            (0, "F32"),
            (1, "F16"),
            (2, "Q4_0"),
            (3, "Q4_1"),
            (7, "Q8_0"),
            (8, "Q5_0"),
            (9, "Q5_1"),
            (10, "Q2_K"),
            (15, "Q4_K_M"),
            (18, "Q6_K"),
            (21, "Q2_K_S"),
            (23, "IQ3_XXS"),
            (30, "IQ4_XS"),
            (31, "IQ1_M"),
            (32, "BF16"),
            (36, "TQ1_0"),
            (37, "TQ2_0"),
            (38, "MXFP4_MOE"),
        ];
        for (code, name) in expected {
            assert_eq!(quantization_name(code), Some(name), "code {code}");
        }
    }

    #[test]
    fn gaps_and_unknown_codes_have_no_name() {
        for code in [5, 6, 39, 1024, u32::MAX] {
            assert_eq!(quantization_name(code), None, "code {code}");
        }
        let named = (0..=38).filter(|&c| quantization_name(c).is_some()).count();
        assert_eq!(named, 37);
    }
}
