// The X test support is shared with the employee-side windows' tests
// (deskside-session-ui); one copy lives there.
#[path = "../../../../agent/ui/tests/support/x11.rs"]
pub mod x11;
