//! Screen capture (Capturer) and input injection (InputSink) for the agent's session helper.
