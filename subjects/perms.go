package subjects

// Permission patterns of CONTRACT.md section 6: the subjects each role may
// publish and subscribe to, as NATS permission lists (wildcards allowed).
// id must be a valid agent id (ValidAgent); the patterns are not checked.

// ReadRequests are the request subjects every role may publish: state
// get, list and status, audit query, verify and status.
var ReadRequests = []string{StateGetWildcard, StateListWildcard, StateStatus, AuditQuery, AuditVerify, AuditStatus}

// Watermarks are the services' commit watermarks.
var Watermarks = []string{StateCommitted, AuditCommitted}

// AgentPublish is what agent id may publish besides ReadRequests: mail,
// calls, state commands and audit events carrying id as sender, actor or
// source.
func AgentPublish(id string) []string {
	return []string{
		msgPrefix + "*." + id + wildSuffix,
		rpcPrefix + "*." + id + wildSuffix,
		cmdPrefix + "*.*." + id,
		auditPrefix + id + wildSuffix,
	}
}

// AgentSubscribe is what agent id may subscribe to besides Watermarks:
// its mail and broadcasts (MsgInboxFilters), calls made to it and every
// state event.
func AgentSubscribe(id string) []string {
	return append(MsgInboxFilters(id), rpcPrefix+id+wildSuffix, StateEvtWildcard)
}

// ObserverSubscribe is what an observer may subscribe to besides
// Watermarks: every state event.
func ObserverSubscribe() []string { return []string{StateEvtWildcard} }

// InboxPrefix is the reply inbox prefix of identity id, _INBOX.<id>: a
// client with credentials sets it (nats.CustomInboxPrefix, the nats CLI's
// --inbox-prefix) and may subscribe only below it, so that no one reads
// another's replies.
func InboxPrefix(id string) string { return "_INBOX." + id }
