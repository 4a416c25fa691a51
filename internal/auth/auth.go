package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Role is what an identity may do (CONTRACT.md section 6).
type Role string

// Roles. RoleInternal is held only by the embedded server's own
// connections and is never issued to a file; RoleService has the same
// permissions and is issued for `codi2 serve --nats-url --creds`, whose
// services connect to a NATS server run by someone else.
const (
	RoleAgent    Role = "agent"
	RoleObserver Role = "observer"
	RoleAdmin    Role = "admin"
	RoleService  Role = "service"
	RoleInternal Role = "internal"
)

// ParseRole returns the role named s: agent, observer, admin or service.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAgent, RoleObserver, RoleAdmin, RoleService:
		return r, nil
	}
	return "", fmt.Errorf("%w %q: want agent, observer, admin or service", ErrBadRole, s)
}

// File names inside an Authority's directory.
const (
	operatorFile = "operator.nk"
	accountFile  = "account.nk"
	systemFile   = "system.nk"
	// operatorJWTFile keeps the operator JWT once signed: a JWT carries
	// its issue time, and nats-server refuses to reload a configuration
	// whose operator changed, so server-config must give the same one.
	operatorJWTFile = "operator.jwt"
	registryFile    = "agents.json"
	lockFile        = ".lock"
	roleTag         = "codi2-role:"
	// AccountName is the name of the account all codi2 identities live in.
	AccountName = "CODI2"
)

// Agent is one issued credential in the registry.
type Agent struct {
	ID        string     `json:"id"`
	Role      Role       `json:"role"`
	Key       string     `json:"key"`
	IssuedAt  time.Time  `json:"issued_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

type registry struct {
	Agents []Agent `json:"agents"`
}

// Authority issues codi2 credentials and the operator and account JWTs
// that the embedded NATS server trusts. Make one with Open.
type Authority struct {
	dir                       string
	operator, account, system nkeys.KeyPair

	mu      sync.Mutex
	stamp   fileStamp
	revoked map[string]int64 // user key -> unix time of revocation
}

// Open opens the authority kept in dir, creating the directory (0700) and
// new operator, account and system account keys (0600) the first time.
// It fails with ErrStore when the directory or a key cannot be read or
// made.
func Open(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrStore, dir, err)
	}
	a := &Authority{dir: dir, revoked: map[string]int64{}}
	err := a.locked(func() error {
		var err error
		if a.operator, err = loadOrCreate(filepath.Join(dir, operatorFile), nkeys.PrefixByteOperator); err != nil {
			return err
		}
		if a.account, err = loadOrCreate(filepath.Join(dir, accountFile), nkeys.PrefixByteAccount); err != nil {
			return err
		}
		a.system, err = loadOrCreate(filepath.Join(dir, systemFile), nkeys.PrefixByteAccount)
		return err
	})
	if err != nil {
		return nil, err
	}
	if _, err := a.Refresh(); err != nil {
		return nil, err
	}
	return a, nil
}

// loadOrCreate reads the seed at path, or makes a new key of kind and
// writes its seed there (0600).
func loadOrCreate(path string, kind nkeys.PrefixByte) (nkeys.KeyPair, error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		kp, err := nkeys.CreatePair(kind)
		if err != nil {
			return nil, fmt.Errorf("%w: new key: %v", ErrStore, err)
		}
		seed, _ = kp.Seed()
		if err := writeFileAtomic(path, append(seed, '\n')); err != nil {
			return nil, err
		}
		return kp, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStore, err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not hold a seed", ErrStore, path)
	}
	if pre, _, err := nkeys.DecodeSeed([]byte(strings.TrimSpace(string(seed)))); err != nil || pre != kind {
		return nil, fmt.Errorf("%w: %s holds a seed of the wrong kind", ErrStore, path)
	}
	return kp, nil
}

// Dir is the directory the authority lives in.
func (a *Authority) Dir() string { return a.dir }

// AccountKey is the public key of the account that signs every
// credential and holds the streams.
func (a *Authority) AccountKey() string { k, _ := a.account.PublicKey(); return k }

// SystemAccountKey is the public key of the server's system account.
func (a *Authority) SystemAccountKey() string { k, _ := a.system.PublicKey(); return k }

// Operator returns the operator claims the server trusts: signed by the
// operator key, naming the system account.
func (a *Authority) Operator() (*jwt.OperatorClaims, error) {
	enc, err := a.OperatorJWT()
	if err != nil {
		return nil, err
	}
	return jwt.DecodeOperatorClaims(enc)
}

// OperatorJWT is the operator's JWT, self-signed.
func (a *Authority) OperatorJWT() (string, error) {
	pub, _ := a.operator.PublicKey()
	path := filepath.Join(a.dir, operatorJWTFile)
	if b, err := os.ReadFile(path); err == nil {
		kept := strings.TrimSpace(string(b))
		if oc, err := jwt.DecodeOperatorClaims(kept); err == nil && oc.Subject == pub && oc.SystemAccount == a.SystemAccountKey() {
			return kept, nil
		}
	}
	oc := jwt.NewOperatorClaims(pub)
	oc.Name = "codi2"
	oc.SystemAccount = a.SystemAccountKey()
	enc, err := oc.Encode(a.operator)
	if err != nil {
		return "", fmt.Errorf("%w: sign operator: %v", ErrStore, err)
	}
	if err := writeFileAtomic(path, []byte(enc+"\n")); err != nil {
		return "", err
	}
	return enc, nil
}

// ServerConfig is the part of a nats-server configuration file that makes
// a NATS server run by someone else (codi2 serve --nats-url) trust the
// credentials of this authority: the operator, the system account and
// both accounts preloaded in a memory resolver, with the registry's
// revocations as of now. Include it in the server's configuration and
// reload the server after each revoke.
func (a *Authority) ServerConfig() (string, error) {
	if _, err := a.Refresh(); err != nil {
		return "", err
	}
	op, err := a.OperatorJWT()
	if err != nil {
		return "", err
	}
	acc, err := a.AccountJWT()
	if err != nil {
		return "", err
	}
	sys, err := a.SystemAccountJWT()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`# codi2 identities for nats-server, from `+"`codi2 agent server-config`"+`.
# Regenerate and reload the server (nats-server --signal reload) after
# every `+"`codi2 agent revoke`"+`.
operator: %s
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s: %s
  %s: %s
}
`, op, a.SystemAccountKey(), a.AccountKey(), acc, a.SystemAccountKey(), sys), nil
}

// AccountJWT returns the codi2 account's JWT, signed by the operator:
// JetStream without limits, and the revocations of the registry as of
// the last Refresh.
func (a *Authority) AccountJWT() (string, error) {
	ac := jwt.NewAccountClaims(a.AccountKey())
	ac.Name = AccountName
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1, MaxAckPending: -1}
	a.mu.Lock()
	for key, at := range a.revoked {
		ac.RevokeAt(key, time.Unix(at, 0))
	}
	a.mu.Unlock()
	enc, err := ac.Encode(a.operator)
	if err != nil {
		return "", fmt.Errorf("%w: sign account: %v", ErrStore, err)
	}
	return enc, nil
}

// SystemAccountJWT returns the system account's JWT, signed by the
// operator.
func (a *Authority) SystemAccountJWT() (string, error) {
	ac := jwt.NewAccountClaims(a.SystemAccountKey())
	ac.Name = "SYS"
	enc, err := ac.Encode(a.operator)
	if err != nil {
		return "", fmt.Errorf("%w: sign system account: %v", ErrStore, err)
	}
	return enc, nil
}

// Add issues a credential for agent id with role and permissions perms
// (nil: no limits) and records it. It returns the credentials file's
// content (JWT and seed, the format of jwt.FormatUserConfig) and the
// registry entry. Adding an id again issues one more credential; earlier
// ones stay valid until revoked.
func (a *Authority) Add(id string, role Role, perms *jwt.Permissions) ([]byte, Agent, error) {
	if _, err := ParseRole(string(role)); err != nil {
		return nil, Agent{}, err
	}
	if err := subjects.ValidAgent(id); err != nil {
		return nil, Agent{}, fmt.Errorf("%w: %v", ErrBadID, err)
	}
	ujwt, kp, err := a.issue(id, role, perms)
	if err != nil {
		return nil, Agent{}, err
	}
	seed, _ := kp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		return nil, Agent{}, fmt.Errorf("%w: format credentials: %v", ErrStore, err)
	}
	pub, _ := kp.PublicKey()
	ag := Agent{ID: id, Role: role, Key: pub, IssuedAt: time.Now().UTC().Truncate(time.Second)}
	err = a.update(func(r *registry) error {
		r.Agents = append(r.Agents, ag)
		return nil
	})
	if err != nil {
		return nil, Agent{}, err
	}
	return creds, ag, nil
}

// issue signs a user JWT for id with role and perms and a new user key.
func (a *Authority) issue(id string, role Role, perms *jwt.Permissions) (string, nkeys.KeyPair, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", nil, fmt.Errorf("%w: new user key: %v", ErrStore, err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = id
	uc.Tags.Add(roleTag + string(role))
	if perms != nil {
		uc.Permissions = *perms
	}
	ujwt, err := uc.Encode(a.account)
	if err != nil {
		return "", nil, fmt.Errorf("%w: sign user: %v", ErrStore, err)
	}
	return ujwt, kp, nil
}

// Internal issues an in-memory credential with RoleInternal and perms for
// the server's own connections: only the returned key pair can use it and
// it is never written anywhere.
func (a *Authority) Internal(name string, perms *jwt.Permissions) (string, nkeys.KeyPair, error) {
	return a.issue(name, RoleInternal, perms)
}

// List returns the registry: every credential issued, in issue order.
func (a *Authority) List() ([]Agent, error) {
	r, err := readRegistry(filepath.Join(a.dir, registryFile))
	return r.Agents, err
}

// Revoke revokes every credential of id not yet revoked and returns how
// many it revoked. A connected client is cut off by whoever serves it (the
// bus notices the change through Refresh). Unknown ids are ErrUnknownAgent.
func (a *Authority) Revoke(id string) (int, error) {
	n := 0
	err := a.update(func(r *registry) error {
		found := false
		now := time.Now().UTC()
		for i := range r.Agents {
			if r.Agents[i].ID != id {
				continue
			}
			found = true
			if r.Agents[i].RevokedAt == nil {
				r.Agents[i].RevokedAt = &now
				n++
			}
		}
		if !found {
			return fmt.Errorf("%w %q", ErrUnknownAgent, id)
		}
		return nil
	})
	return n, err
}

// Refresh rereads the registry's revocations if the file changed since
// the last read, and reports whether it did.
func (a *Authority) Refresh() (bool, error) {
	path := filepath.Join(a.dir, registryFile)
	st := stampOf(path)
	a.mu.Lock()
	same := st == a.stamp
	a.mu.Unlock()
	if same {
		return false, nil
	}
	r, err := readRegistry(path)
	if err != nil {
		return false, err
	}
	revoked := map[string]int64{}
	for _, ag := range r.Agents {
		if ag.RevokedAt != nil {
			// A revocation covers JWTs issued up to its second.
			revoked[ag.Key] = ag.RevokedAt.Unix() + 1
		}
	}
	a.mu.Lock()
	a.stamp, a.revoked = st, revoked
	a.mu.Unlock()
	return true, nil
}

// update applies fn to the registry under the directory's lock and
// replaces the file atomically.
func (a *Authority) update(fn func(*registry) error) error {
	err := a.locked(func() error {
		path := filepath.Join(a.dir, registryFile)
		r, err := readRegistry(path)
		if err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return fmt.Errorf("%w: %v", ErrStore, err)
		}
		return writeFileAtomic(path, append(data, '\n'))
	})
	if err != nil {
		return err
	}
	_, err = a.Refresh()
	return err
}

// readRegistry reads the registry at path; a missing file is empty.
func readRegistry(path string) (registry, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return registry{}, nil
	}
	if err != nil {
		return registry{}, fmt.Errorf("%w: %v", ErrStore, err)
	}
	return decodeRegistry(data)
}

// decodeRegistry parses agents.json.
func decodeRegistry(data []byte) (registry, error) {
	var r registry
	if err := json.Unmarshal(data, &r); err != nil {
		return registry{}, fmt.Errorf("%w: %s: %v", ErrStore, registryFile, err)
	}
	for _, ag := range r.Agents {
		if !nkeys.IsValidPublicUserKey(ag.Key) {
			return registry{}, fmt.Errorf("%w: %s: agent %q has no valid user key", ErrStore, registryFile, ag.ID)
		}
	}
	return r, nil
}

// writeFileAtomic writes data to path (mode 0600) through a temporary file
// and a rename, so a reader sees the old or the new file, never a part.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStore, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%w: %v", ErrStore, werr)
	}
	return nil
}

// fileStamp tells whether a file changed between two looks.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}
