//! The `--where` expression language of the fleet commands (`deskside diag
//! --all|--group`, `deskside timeline --all`): comparisons `FIELD OP VALUE`
//! joined with `and`/`or` and parentheses.
//!
//! Each command brings its own [`Vocabulary`] (the fields it knows, with
//! their kinds) and reads a field of one of its rows through [`Record`];
//! the parser, the type checks and the evaluation are written once, here.
//! Parsing checks every field name against the vocabulary and refuses
//! unknown ones with the valid names, so a typo never silently matches
//! nothing. Pure: nothing here does I/O.

use std::borrow::Cow;

/// What values a field holds, which decides the comparisons it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A number: every comparison.
    Number,
    /// Text: `==`, `!=` and `~` (contains, ignoring case).
    Text,
    /// `true` or `false`: `==` and `!=`.
    Bool,
    /// A number or a text, depending on the row (an optional value a
    /// format leaves empty until measured).
    Any,
}

impl Kind {
    /// How listings name the kind.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Number => "number",
            Kind::Text => "text",
            Kind::Bool => "true/false",
            Kind::Any => "number or text",
        }
    }
}

/// One field a `--where` expression may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// The name as written in the expression.
    pub name: String,
    /// Its values.
    pub kind: Kind,
    /// What it is, in a few words (empty when the name says it).
    pub about: &'static str,
    /// For a text field with a closed set of values (a verdict, a segment):
    /// those values, so `== wifi` is refused instead of never matching.
    /// Empty for any text.
    pub values: &'static [&'static str],
}

impl FieldInfo {
    /// A field described by `about`, with any value of its kind.
    pub fn new(name: &str, kind: Kind, about: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            about,
            values: &[],
        }
    }

    /// The same field, limited to `values`.
    pub fn one_of(self, values: &'static [&'static str]) -> Self {
        Self { values, ..self }
    }
}

/// The fields of one command, and where a person finds them listed.
#[derive(Clone, Copy, Debug)]
pub struct Vocabulary<'a> {
    /// Every field an expression may name.
    pub fields: &'a [FieldInfo],
    /// Where they are listed, e.g. "`deskside diag fields`".
    pub listing: &'static str,
    /// An expression to show in syntax errors.
    pub example: &'static str,
}

/// One field's value in one row, as a [`Record`] reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue<'a> {
    /// Not measured, or not there: no comparison matches, not even `!=`.
    Missing,
    /// A number.
    Number(f64),
    /// A text.
    Text(Cow<'a, str>),
    /// A yes or no.
    Bool(bool),
    /// Several values (the findings of a verdict, the segments of a
    /// device's episodes): `!=` matches when none of them is equal, every
    /// other comparison when any of them matches.
    Each(Vec<FieldValue<'a>>),
}

impl<'a> FieldValue<'a> {
    /// A borrowed text.
    pub fn text(text: &'a str) -> Self {
        FieldValue::Text(Cow::Borrowed(text))
    }
}

/// A row a filter is evaluated against: a device of a fleet run.
pub trait Record {
    /// The value of `field`, one of the names of the command's
    /// [`Vocabulary`].
    fn field(&self, field: &str) -> FieldValue<'_>;
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Contains,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Contains => "~",
        }
    }
}

/// The value compared with.
#[derive(Clone, Debug, PartialEq)]
enum Literal {
    /// A number, with its text as written (compared as text with a text
    /// field: `hostname == 42`).
    Number(f64, String),
    Text(String),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq)]
struct Comparison {
    field: String,
    op: Op,
    value: Literal,
}

/// A parsed `--where` expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter(Expr);

#[derive(Clone, Debug, PartialEq)]
enum Expr {
    /// Every part matches.
    All(Vec<Expr>),
    /// At least one part matches.
    Any(Vec<Expr>),
    /// One comparison.
    Compare(Comparison),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(Op),
    And,
    Or,
    Open,
    Close,
}

const SYNTAX: &str =
    "write FIELD OP VALUE (OP one of < <= > >= == != ~), joined with and/or and parentheses";

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '&' if next == Some('&') => {
                tokens.push(Token::And);
                i += 2;
            }
            '|' if next == Some('|') => {
                tokens.push(Token::Or);
                i += 2;
            }
            '<' | '>' | '=' | '!' | '~' => {
                let (op, len) = match (c, next) {
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('=', Some('=')) => (Op::Eq, 2),
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    ('=', _) => (Op::Eq, 1),
                    ('~', _) => (Op::Contains, 1),
                    _ => return Err(format!("unexpected '!' in {text:?}")),
                };
                tokens.push(Token::Op(op));
                i += len;
            }
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&d| d == c)
                    .ok_or_else(|| format!("unclosed quote in {text:?}"))?;
                tokens.push(Token::Quoted(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '&' | '|' => return Err(format!("unexpected '{c}' in {text:?}")),
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"()<>=!~'\"&|".contains(chars[i])
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    vocabulary: &'a Vocabulary<'a>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn connective(&self, which: &Token) -> bool {
        match (self.peek(), which) {
            (Some(Token::And), Token::And) | (Some(Token::Or), Token::Or) => true,
            (Some(Token::Word(word)), Token::And) => word.eq_ignore_ascii_case("and"),
            (Some(Token::Word(word)), Token::Or) => word.eq_ignore_ascii_case("or"),
            _ => false,
        }
    }

    fn any(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.all()?];
        while self.connective(&Token::Or) {
            self.at += 1;
            parts.push(self.all()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Any(parts)
        })
    }

    fn all(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.primary()?];
        while self.connective(&Token::And) {
            self.at += 1;
            parts.push(self.primary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::All(parts)
        })
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.tokens.get(self.at).cloned() {
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.any()?;
                if self.peek() != Some(&Token::Close) {
                    return Err("missing ')'".to_owned());
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Word(field)) => {
                self.at += 1;
                let info = self
                    .vocabulary
                    .fields
                    .iter()
                    .find(|f| f.name == field)
                    .ok_or_else(|| unknown_field(&field, self.vocabulary))?;
                let op = match self.tokens.get(self.at) {
                    Some(Token::Op(op)) => *op,
                    _ => return Err(format!("expected a comparison after {field:?}")),
                };
                self.at += 1;
                let raw = match self.tokens.get(self.at) {
                    Some(Token::Word(word)) => word.clone(),
                    Some(Token::Quoted(text)) => text.clone(),
                    _ => return Err(format!("expected a value after {field} {}", op.text())),
                };
                let quoted = matches!(self.tokens.get(self.at), Some(Token::Quoted(_)));
                self.at += 1;
                comparison(info, op, raw, quoted).map(Expr::Compare)
            }
            Some(_) => Err("expected a field name".to_owned()),
            None => Err("the expression ends too early".to_owned()),
        }
    }
}

fn unknown_field(field: &str, vocabulary: &Vocabulary<'_>) -> String {
    let known = vocabulary.fields;
    let last = field.rsplit('.').next().unwrap_or(field);
    let close: Vec<&str> = known
        .iter()
        .map(|f| f.name.as_str())
        .filter(|name| name.rsplit('.').next() == Some(last) || name.starts_with(field))
        .take(5)
        .collect();
    let hint = if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", close.join(", "))
    };
    let all: Vec<&str> = known.iter().map(|f| f.name.as_str()).collect();
    format!(
        "unknown field {field:?} in --where{hint}; valid fields (see {}): {}",
        vocabulary.listing,
        all.join(", ")
    )
}

fn comparison(info: &FieldInfo, op: Op, raw: String, quoted: bool) -> Result<Comparison, String> {
    let name = &info.name;
    let number = if quoted {
        None
    } else {
        raw.parse::<f64>().ok()
    };
    let text_op = matches!(op, Op::Eq | Op::Ne | Op::Contains);
    let value = match info.kind {
        Kind::Number => match number {
            Some(n) if op != Op::Contains => Literal::Number(n, raw),
            Some(_) => {
                return Err(format!(
                    "{name} is a number: compare it with < <= > >= == !="
                ))
            }
            None => return Err(format!("{name} is a number, and {raw:?} is not one")),
        },
        Kind::Bool => match (raw.as_str(), op) {
            ("true", Op::Eq | Op::Ne) => Literal::Bool(true),
            ("false", Op::Eq | Op::Ne) => Literal::Bool(false),
            _ => {
                return Err(format!(
                    "{name} is true or false: write {name} == true or {name} == false"
                ))
            }
        },
        Kind::Text if !text_op => {
            return Err(format!(
                "{name} is text: compare it with ==, != or ~ (contains)"
            ))
        }
        Kind::Text => Literal::Text(raw),
        Kind::Any => match number {
            Some(n) if op != Op::Contains => Literal::Number(n, raw),
            // An optional yes/no (`dns.relay_reachable`).
            _ if !quoted && matches!(op, Op::Eq | Op::Ne) && (raw == "true" || raw == "false") => {
                Literal::Bool(raw == "true")
            }
            _ if text_op => Literal::Text(raw),
            _ => {
                return Err(format!(
                    "{raw:?} is not a number, so only ==, != and ~ apply to {name}"
                ))
            }
        },
    };
    if let Literal::Text(text) = &value {
        if !info.values.is_empty() && op != Op::Contains && !info.values.contains(&text.as_str()) {
            return Err(format!(
                "{name} is one of {}; {text:?} is not",
                info.values.join(", ")
            ));
        }
    }
    Ok(Comparison {
        field: name.clone(),
        op,
        value,
    })
}

impl Filter {
    /// Parses an expression, checking every field name against
    /// `vocabulary`. The error says what is wrong and how to write it.
    pub fn parse(text: &str, vocabulary: &Vocabulary<'_>) -> Result<Self, String> {
        let syntax = format!("{SYNTAX}, e.g. '{}'", vocabulary.example);
        let tokens = tokenize(text).map_err(|e| format!("{e}: {syntax}"))?;
        if tokens.is_empty() {
            return Err(format!("--where is empty: {syntax}"));
        }
        let mut parser = Parser {
            tokens,
            at: 0,
            vocabulary,
        };
        let expr = parser
            .any()
            .map_err(|e| format!("--where {text:?}: {e}: {syntax}"))?;
        if parser.at != parser.tokens.len() {
            return Err(format!(
                "--where {text:?}: unexpected text after a comparison; join comparisons with and/or: {syntax}"
            ));
        }
        Ok(Self(expr))
    }

    /// The field names the expression reads (with repeats).
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.0.fields(&mut out);
        out
    }

    /// Whether `record` matches.
    pub fn matches(&self, record: &impl Record) -> bool {
        self.0.matches(record)
    }
}

impl Expr {
    fn fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::All(parts) | Expr::Any(parts) => parts.iter().for_each(|p| p.fields(out)),
            Expr::Compare(c) => out.push(&c.field),
        }
    }

    fn matches(&self, record: &impl Record) -> bool {
        match self {
            Expr::All(parts) => parts.iter().all(|p| p.matches(record)),
            Expr::Any(parts) => parts.iter().any(|p| p.matches(record)),
            Expr::Compare(c) => c.holds_for(&record.field(&c.field)),
        }
    }
}

impl Comparison {
    fn holds_for(&self, have: &FieldValue<'_>) -> bool {
        match have {
            FieldValue::Missing => false,
            FieldValue::Each(values) => match self.op {
                Op::Ne => values.iter().all(|v| self.holds_for(v)),
                _ => values.iter().any(|v| self.holds_for(v)),
            },
            FieldValue::Text(have) => match (&self.value, self.op) {
                (Literal::Text(want), Op::Eq) => have == want,
                (Literal::Text(want), Op::Ne) => have != want,
                (Literal::Text(want), Op::Contains) => {
                    have.to_lowercase().contains(&want.to_lowercase())
                }
                (Literal::Number(_, raw), Op::Eq) => have == raw,
                (Literal::Number(_, raw), Op::Ne) => have != raw,
                _ => false,
            },
            FieldValue::Number(have) => {
                let Literal::Number(want, _) = &self.value else {
                    return false;
                };
                match self.op {
                    Op::Lt => have < want,
                    Op::Le => have <= want,
                    Op::Gt => have > want,
                    Op::Ge => have >= want,
                    Op::Eq => have == want,
                    Op::Ne => have != want,
                    Op::Contains => false,
                }
            }
            FieldValue::Bool(have) => match (&self.value, self.op) {
                (Literal::Bool(want), Op::Eq) => have == want,
                (Literal::Bool(want), Op::Ne) => have != want,
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of a made-up command: a name, a count, a flag, tags.
    struct Row {
        name: &'static str,
        count: Option<f64>,
        up: bool,
        tags: Vec<&'static str>,
    }

    impl Record for Row {
        fn field(&self, field: &str) -> FieldValue<'_> {
            match field {
                "name" => FieldValue::text(self.name),
                "count" => self.count.map_or(FieldValue::Missing, FieldValue::Number),
                "up" => FieldValue::Bool(self.up),
                "tag" => FieldValue::Each(self.tags.iter().map(|t| FieldValue::text(t)).collect()),
                _ => FieldValue::Missing,
            }
        }
    }

    fn vocabulary_fields() -> Vec<FieldInfo> {
        vec![
            FieldInfo::new("name", Kind::Text, "a name"),
            FieldInfo::new("count", Kind::Number, "how many"),
            FieldInfo::new("up", Kind::Bool, "whether it is up"),
            FieldInfo::new("tag", Kind::Text, "a tag").one_of(&["red", "green", "blue"]),
        ]
    }

    fn parse(text: &str) -> Result<Filter, String> {
        let fields = vocabulary_fields();
        Filter::parse(
            text,
            &Vocabulary {
                fields: &fields,
                listing: "`made-up fields`",
                example: "count > 2",
            },
        )
    }

    #[test]
    fn comparisons_read_the_rows_values() {
        let row = Row {
            name: "laptop-7",
            count: Some(3.0),
            up: true,
            tags: vec!["red", "blue"],
        };
        // (expression, matches)
        for (text, expected) in [
            ("name == laptop-7", true),
            ("name ~ LAPTOP", true),
            ("name != laptop-7", false),
            ("count > 2", true),
            ("count <= 2", false),
            ("count == 3 and up == true", true),
            ("count == 4 or up != true", false),
            ("(count == 4 or up == true) && name ~ 7", true),
            ("tag == blue", true),
            ("tag == green", false),
            ("tag != green", true),
            ("tag != red", false),
            ("tag ~ ee", false),
        ] {
            let filter = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(filter.matches(&row), expected, "{text}");
        }
        // A missing value matches nothing, `!=` included; no tags: `==`
        // matches nothing and `!=` everything.
        let bare = Row {
            name: "x",
            count: None,
            up: false,
            tags: vec![],
        };
        for (text, expected) in [
            ("count > 0", false),
            ("count != 3", false),
            ("tag == red", false),
            ("tag != red", true),
        ] {
            assert_eq!(parse(text).unwrap().matches(&bare), expected, "{text}");
        }
        assert_eq!(
            parse("name == a or (count > 1 and tag == red)")
                .unwrap()
                .fields(),
            ["name", "count", "tag"]
        );
    }

    #[test]
    fn fields_kinds_and_closed_values_are_checked() {
        let error = parse("colour == red").unwrap_err();
        assert!(error.contains("unknown field \"colour\""), "{error}");
        assert!(error.contains("`made-up fields`"), "{error}");
        assert!(error.contains("name, count, up, tag"), "{error}");
        let error = parse("tag == purple").unwrap_err();
        assert!(error.contains("red, green, blue"), "{error}");
        // `~` is not limited to the closed values.
        assert!(parse("tag ~ re").is_ok());
        let error = parse("count ~ 3").unwrap_err();
        assert!(error.contains("count is a number"), "{error}");
        let error = parse("count > ").unwrap_err();
        assert!(error.contains("e.g. 'count > 2'"), "{error}");
        for text in ["name < a", "up == maybe", "count == many", "name == a b"] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
    }
}
