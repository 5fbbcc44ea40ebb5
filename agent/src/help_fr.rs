//! The agent's `--help` in French, for employees whose locale (or
//! `--lang fr`) is French: the same commands and options, their texts and
//! help headings translated. English stays the source (the doc comments on
//! `Cli`); this only replaces texts, so a new option without a translation
//! still shows its English help.

use clap::{Arg, ArgAction, Command};

/// The help page layout with French headings.
const TEMPLATE: &str = "\
{before-help}{about-with-newline}
Utilisation\u{a0}: {usage}

{all-args}{after-help}";

/// `(argument id, French help)` for options shared by several commands.
const ARGS: &[ArgHelp] = &[
    ("state_dir", "Dossier d'état (identité, clé, état). Par défaut /var/lib/deskside-agent pour root, sinon ~/.local/state/deskside-agent."),
    ("verbose", "Journaliser davantage (à répéter pour plus de détails)."),
    ("lang", "Langue de ce qu'affichent `check`, `status` et `history`\u{a0}: en ou fr (par défaut\u{a0}: celle de la session, LC_ALL, LC_MESSAGES ou LANG)."),
    ("json", "Un objet JSON au lieu du texte."),
];

/// `(argument id, French help)`.
type ArgHelp = (&'static str, &'static str);

/// `(subcommand, French description, [(argument id, French help)])`.
const COMMANDS: &[(&str, &str, &[ArgHelp])] = &[
    ("enroll", "Inscrit cet ordinateur avec un jeton d'inscription fourni par le service informatique.", &[
        ("token", "Le jeton (commence par dse1_). Lu aussi dans DESKSIDE_ENROLL_TOKEN."),
        ("force", "Remplace une inscription existante."),
        ("if_not_enrolled", "Ne fait rien si cet ordinateur est déjà inscrit (pour les installateurs, qui peuvent repasser avec le même jeton)."),
        ("from_config", "Utilise une seule fois le jeton qu'un installateur a laissé dans le fichier de jeton\u{a0}: il est effacé une fois l'inscription faite. Ne fait rien sans ce fichier."),
        ("token_file", "Le fichier de jeton pour --from-config."),
    ]),
    ("run", "Reste connecté au relais, en se reconnectant si besoin, jusqu'à l'arrêt.", &[
        ("wait_for_enrollment", "Si l'ordinateur n'est pas encore inscrit, attendre l'inscription au lieu de s'arrêter (le service installé fait ainsi)."),
    ]),
    ("status", "Indique si cet ordinateur est inscrit et connecté.", &[]),
    ("check", "Vérifie cet ordinateur et sa connexion, et dit simplement d'où vient un problème\u{a0}: l'ordinateur, ses réglages, le Wi‑Fi ou la box, le fournisseur d'accès, ou le service d'assistance.", &[
        ("quick", "Sans le test de débit (environ 3\u{a0}s d'échanges avec le relais)."),
        ("details", "Le rapport complet\u{a0}: chaque constat avec ses mesures et ses seuils, les notes pour le technicien et ce qui n'a pas pu être mesuré."),
    ]),
    ("history", "Liste les diagnostics faits sur cet ordinateur, et qui les a demandés.", &[]),
    ("help", "Demande de l'aide au service informatique\u{a0}: quelques questions (ou les options), la vérification rapide jointe, et ce qui sera envoyé montré d'abord. Gardée sur cet ordinateur jusqu'à ce que le relais du service informatique l'ait reçue.", &[
        ("summary", "Ce qui ne va pas, avec vos mots."),
        ("since", "Depuis quand (par ex. «\u{a0}ce matin\u{a0}»)."),
        ("pattern", "ongoing (en cours), intermittent (par moments) ou over (terminé)."),
        ("apps", "Applications touchées\u{a0}: video (visio), vpn, mail, browser (navigateur), printer (imprimante), other (autre)."),
        ("urgency", "À quel point cela vous bloque\u{a0}: can_work (je peux travailler), slowed (ralenti) ou blocked (bloqué)."),
        ("impact", "Qui d'autre est touché\u{a0}: me (moi), team (mon équipe) ou many (beaucoup)\u{a0}; me par défaut."),
        ("contact", "Comment et quand le service informatique peut vous joindre (téléphone, chat ou e-mail, et quand)."),
        ("no_diagnostics", "Ne pas joindre les mesures de la vérification rapide."),
        ("yes", "Envoyer sans demander de confirmation."),
        ("window", "Poser les questions dans une fenêtre plutôt que dans le terminal (ce que lance le raccourci «\u{a0}Demander de l'aide\u{a0}»)."),
    ]),
    ("requests", "Montre vos demandes d'aide, où elles en sont et les réponses du service informatique.", &[]),
    ("service", "Installe, retire ou exécute le service Windows deskside-agent.", &[]),
    ("session-helper", "Tourne dans votre session graphique\u{a0}: vous demande votre accord quand le support informatique propose une session à distance, montre quand une session est en cours (avec un bouton Arrêter) et ne partage l'écran qu'après votre accord. Démarré automatiquement à l'ouverture de session.", &[
        ("socket", "La socket du service de l'agent (par défaut\u{a0}: celle du service installé, ou celle d'un agent lancé par vous)."),
    ]),
];

fn with_args(mut command: Command, args: &[ArgHelp]) -> Command {
    for (id, help) in args {
        if command.get_arguments().any(|a| a.get_id() == *id) {
            // The possible values are in the French help text itself.
            command = command.mut_arg(*id, |a| a.help(*help).hide_possible_values(*id == "lang"));
        }
    }
    let has_own_help = command.get_arguments().any(|a| a.get_id() == "help");
    if !has_own_help {
        command = command.disable_help_flag(true).arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .action(ArgAction::Help)
                .help("Affiche cette aide."),
        );
    }
    command.help_template(TEMPLATE)
}

/// `command` (the agent's CLI) with its help in French.
pub fn french(command: Command) -> Command {
    let mut command = with_args(command, ARGS)
        .about("L'agent deskside\u{a0}: permet au service informatique de voir l'état de cet ordinateur et, seulement avec votre accord, de vous aider sur votre écran.")
        .subcommand_help_heading("Commandes")
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .short('V')
                .long("version")
                .action(ArgAction::Version)
                .help("Affiche la version."),
        );
    for (name, about, args) in COMMANDS {
        if command.find_subcommand(name).is_some() {
            command = command.mut_subcommand(*name, |sub| {
                with_args(with_args(sub, ARGS), args)
                    .about(*about)
                    .long_about(None::<&str>)
            });
        }
    }
    command
}

/// Whether the help should be French: `--lang fr` (or `--lang=fr`) on the
/// command line, else the locale.
pub fn wants_french(args: &[String], env: impl Fn(&str) -> Option<String>) -> bool {
    let flag = args.iter().enumerate().find_map(|(i, arg)| {
        if arg == "--lang" {
            args.get(i + 1).cloned()
        } else {
            arg.strip_prefix("--lang=").map(str::to_owned)
        }
    });
    deskside_diag::report::lang_for(flag.as_deref(), env) == deskside_diag::report::Lang::Fr
}
