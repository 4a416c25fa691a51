package subjects

// ServerInstance is where each running codi2 instance answers "who serves
// these streams?" with its identity (JSON: id, pid, host, data, nats,
// started), so that a second instance started against the same NATS
// refuses to start and names the first.
const ServerInstance = "codi.server.instance"
