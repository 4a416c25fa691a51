package subjects

// StateEvtKind is the wildcard of every event of kind's records,
// codi.state.evt.<kind>.*, for watching a kind. kind must be valid
// (ValidKind); it is not checked here.
func StateEvtKind(kind string) string {
	return evtPrefix + kind + ".*"
}
