// Package cli is the agent's command line: one codi2 verb per coordination
// step (send, inbox, claim, renew, release, log, history, get, list, watch,
// status), built on the public clients bus.Agent, state.Client and
// audit.Client, as CONTRACT.md section 5 describes. Every verb prints text
// or, with --json, one compact JSON object per line, and exits with the
// contract's codes (ExitOK ... ExitUnreachable).
package cli
