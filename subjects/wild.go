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

// The inbox service's request subjects: codi.inbox.open.<agent> makes or
// updates agent's inbox consumer on its behalf, codi.inbox.peek.<agent>
// answers its pending mail without taking it. The agent id in the subject
// is what server permissions pin an agent to.
const (
	inboxOpenPrefix = "codi.inbox.open."
	inboxPeekPrefix = "codi.inbox.peek."
	// InboxOpenWildcard and InboxPeekWildcard are what the inbox service
	// listens on.
	InboxOpenWildcard = inboxOpenPrefix + "*"
	InboxPeekWildcard = inboxPeekPrefix + "*"
)

// InboxOpen is the open request subject of agent (which must be valid).
func InboxOpen(agent string) string { return inboxOpenPrefix + agent }

// InboxPeek is the peek request subject of agent (which must be valid).
func InboxPeek(agent string) string { return inboxPeekPrefix + agent }
