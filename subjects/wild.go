package subjects

// StateEvtKind is the wildcard of every event of kind's records,
// codi.state.evt.<kind>.*, for watching a kind. kind must be valid
// (ValidKind); it is not checked here.
func StateEvtKind(kind string) string {
	return evtPrefix + kind + ".*"
}

// MsgInboxFilters returns every subject of CODI_MSG that is agent's mail:
// codi.msg.<agent>.> and codi.msg.all.>, and the bare codi.msg.<agent> and
// codi.msg.all, which break the contract (no sender, no type) but are stored
// all the same, so that an inbox never leaves a stored message behind.
// agent must be valid (ValidAgent).
func MsgInboxFilters(agent string) []string {
	return []string{msgPrefix + agent + wildSuffix, MsgBroadcast, msgPrefix + agent, msgPrefix + All}
}
