//! Every sentence the consent dialog and the session indicator show, in
//! English and French, chosen from the locale (`LC_ALL`, `LC_MESSAGES`,
//! `LANG`, POSIX precedence); on Windows, where these are seldom set, from
//! the user's display language when none is. French uses French typography: a no-break
//! space before `:` and a narrow no-break space before `;`, `?` and `!`.
//!
//! One term per concept: the technician *offers* help ("proposition" in
//! French), the employee *accepts* or *declines* it, a running session is
//! *stopped*.

use deskside_protocol::session::EndedBy;

/// Languages the windows speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UiLang {
    /// English.
    #[default]
    En,
    /// French.
    Fr,
}

impl UiLang {
    /// From the locale variables read through `env`: the first of
    /// `LC_ALL`, `LC_MESSAGES`, `LANG` that is set and not empty; French for
    /// `fr…`, English otherwise.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Self {
        Self::from_env_if_set(env).unwrap_or_default()
    }

    /// Like [`UiLang::from_env`], `None` when no variable is set.
    fn from_env_if_set(env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let chosen = ["LC_ALL", "LC_MESSAGES", "LANG"]
            .into_iter()
            .filter_map(&env)
            .map(|value| value.trim().to_owned())
            .find(|value| !value.is_empty())?;
        let french = chosen
            .get(..2)
            .is_some_and(|p| p.eq_ignore_ascii_case("fr"));
        Some(if french { UiLang::Fr } else { UiLang::En })
    }

    /// From a Windows language identifier (`LANGID`): French for every
    /// French (primary language `LANG_FRENCH`, 0x0C: France, Canada,
    /// Belgium, Switzerland…), English otherwise.
    pub fn from_windows_langid(langid: u16) -> Self {
        const LANG_FRENCH: u16 = 0x0c;
        if langid & 0x3ff == LANG_FRENCH {
            UiLang::Fr
        } else {
            UiLang::En
        }
    }

    /// From this process's locale variables; when none is set, on Windows,
    /// from the user's display language (`GetUserDefaultUILanguage`).
    pub fn current() -> Self {
        Self::from_env_if_set(|name| std::env::var(name).ok())
            .or_else(os_display_language)
            .unwrap_or_default()
    }

    /// `en` or `fr`.
    pub(crate) fn t<'a>(self, en: &'a str, fr: &'a str) -> &'a str {
        match self {
            UiLang::En => en,
            UiLang::Fr => fr,
        }
    }
}

#[cfg(windows)]
fn os_display_language() -> Option<UiLang> {
    Some(UiLang::from_windows_langid(
        crate::windows_lang::user_ui_language(),
    ))
}

#[cfg(not(windows))]
fn os_display_language() -> Option<UiLang> {
    None
}

/// `: ` with the no-break space French wants before the colon.
pub(crate) fn colon(lang: UiLang) -> &'static str {
    lang.t(":", "\u{a0}:")
}

/// Plain-language "who ended it" for the employee.
pub(crate) fn ended(lang: UiLang, by: EndedBy) -> &'static str {
    match (by, lang) {
        (EndedBy::Technician, UiLang::En) => "The technician ended the session.",
        (EndedBy::Technician, UiLang::Fr) => "Le technicien a mis fin à la session.",
        (EndedBy::Employee, UiLang::En) => "You ended the session.",
        (EndedBy::Employee, UiLang::Fr) => "Vous avez arrêté la session.",
        (EndedBy::Expired, UiLang::En) => "The session's time ran out.",
        (EndedBy::Expired, UiLang::Fr) => "La durée de la session est écoulée.",
        (EndedBy::ConnectionLost, UiLang::En) => "The connection was lost; the session is over.",
        (EndedBy::ConnectionLost, UiLang::Fr) => {
            "La connexion a été perdue\u{202f}; la session est terminée."
        }
        (_, UiLang::En) => "The session is over.",
        (_, UiLang::Fr) => "La session est terminée.",
    }
}

/// The indicator's help on Windows: what a session helper running as the
/// signed-in user cannot reach. Windows keeps input from a normal user's
/// process out of windows that run as administrator (User Interface
/// Privilege Isolation), and shows User Account Control prompts on the
/// secure desktop, which no such process can capture or click.
pub fn windows_limits(lang: UiLang) -> &'static str {
    lang.t(
        "On Windows, the technician cannot use windows that run as administrator, \
         and cannot see or answer User Account Control (UAC) prompts: Windows shows \
         them on a secure desktop that deskside, running as you, cannot reach. \
         If one appears, answer it yourself.",
        "Sous Windows, le technicien ne peut pas utiliser les fenêtres lancées en tant \
         qu'administrateur, ni voir ou accepter les demandes du Contrôle de compte \
         d'utilisateur (UAC)\u{a0}: Windows les affiche sur un bureau sécurisé que \
         deskside, qui fonctionne avec votre compte, ne peut pas atteindre. \
         Si l'une d'elles apparaît, répondez-y vous-même.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_windows_help_names_elevated_windows_and_uac_in_both_languages() {
        let en = windows_limits(UiLang::En);
        assert!(en.contains("administrator") && en.contains("User Account Control (UAC)"));
        assert!(en.contains("secure desktop"));
        let fr = windows_limits(UiLang::Fr);
        assert!(fr.contains("administrateur") && fr.contains("(UAC)\u{a0}:"));
        assert!(fr.contains("bureau sécurisé"));
        assert!(
            !fr.contains(" :"),
            "French wants a no-break space before ':'"
        );
    }

    #[test]
    fn the_locale_picks_the_language() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            UiLang::from_env(env(&[("LANG", "fr_FR.UTF-8")])),
            UiLang::Fr
        );
        assert_eq!(
            UiLang::from_env(env(&[("LC_ALL", "C"), ("LANG", "fr_FR.UTF-8")])),
            UiLang::En
        );
        assert_eq!(
            UiLang::from_env(env(&[("LC_ALL", ""), ("LANG", "fr")])),
            UiLang::Fr
        );
        assert_eq!(UiLang::from_env(env(&[])), UiLang::En);
        assert_eq!(UiLang::from_env_if_set(env(&[])), None);
        assert_eq!(
            UiLang::from_env_if_set(env(&[("LANG", "C")])),
            Some(UiLang::En)
        );
    }

    #[test]
    fn windows_language_ids_pick_the_language() {
        for (langid, lang) in [
            (0x040c, UiLang::Fr), // fr-FR
            (0x0c0c, UiLang::Fr), // fr-CA
            (0x080c, UiLang::Fr), // fr-BE
            (0x100c, UiLang::Fr), // fr-CH
            (0x0409, UiLang::En), // en-US
            (0x0407, UiLang::En), // de-DE
            (0x0000, UiLang::En),
        ] {
            assert_eq!(UiLang::from_windows_langid(langid), lang, "{langid:#06x}");
        }
    }
}
