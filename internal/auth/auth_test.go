package auth

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpen_CreatesPrivateKeysOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	a, err := Open(dir)
	require.NoError(t, err)
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	for _, f := range []string{operatorFile, accountFile, systemFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), f)
	}
	b, err := Open(dir)
	require.NoError(t, err)
	assert.Equal(t, a.AccountKey(), b.AccountKey(), "the keys are kept")
	assert.Equal(t, a.SystemAccountKey(), b.SystemAccountKey())
	assert.True(t, nkeys.IsValidPublicAccountKey(a.AccountKey()))
	assert.NotEqual(t, a.AccountKey(), a.SystemAccountKey())
	assert.Equal(t, dir, a.Dir())
}

func TestOpen_BadKeyFiles(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"not a seed", "hello"},
		{"a user seed", func() string { kp, _ := nkeys.CreateUser(); s, _ := kp.Seed(); return string(s) }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, accountFile), []byte(tt.content), 0o600))
			_, err := Open(dir)
			require.ErrorIs(t, err, ErrStore)
			assert.NotContains(t, err.Error(), tt.content, "no secret in the error")
		})
	}
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err := Open(filepath.Join(file, "auth"))
	require.ErrorIs(t, err, ErrStore)
	unreadable := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(unreadable, operatorFile), 0o700))
	_, err = Open(unreadable)
	require.ErrorIs(t, err, ErrStore)
}

func TestAuthority_AddListRevoke(t *testing.T) {
	a, err := Open(t.TempDir())
	require.NoError(t, err)
	perms := &jwt.Permissions{}
	perms.Pub.Allow.Add("codi.msg.*.agent-1.>")
	creds, ag, err := a.Add("Agent-1", RoleAgent, perms)
	require.NoError(t, err)
	assert.Equal(t, "Agent-1", ag.ID)
	assert.True(t, nkeys.IsValidPublicUserKey(ag.Key))

	ujwt, err := jwt.ParseDecoratedJWT(creds)
	require.NoError(t, err)
	uc, err := jwt.DecodeUserClaims(ujwt)
	require.NoError(t, err)
	assert.Equal(t, a.AccountKey(), uc.Issuer, "signed by the account")
	assert.Equal(t, ag.Key, uc.Subject)
	assert.Equal(t, "Agent-1", uc.Name, "the id keeps its case")
	assert.Equal(t, jwt.StringList{"codi.msg.*.agent-1.>"}, uc.Pub.Allow)
	assert.Contains(t, uc.Tags, roleTag+"agent")
	kp, err := jwt.ParseDecoratedUserNKey(creds)
	require.NoError(t, err)
	pub, _ := kp.PublicKey()
	assert.Equal(t, ag.Key, pub)

	_, _, err = a.Add("agent-1", RoleAdmin, nil)
	require.NoError(t, err)
	_, _, err = a.Add("dash", RoleObserver, nil)
	require.NoError(t, err)
	list, err := a.List()
	require.NoError(t, err)
	require.Len(t, list, 3)

	n, err := a.Revoke("agent-1")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = a.Revoke("agent-1")
	require.NoError(t, err)
	assert.Equal(t, 0, n, "nothing left to revoke")
	_, err = a.Revoke("nobody")
	require.ErrorIs(t, err, ErrUnknownAgent)

	enc, err := a.AccountJWT()
	require.NoError(t, err)
	ac, err := jwt.DecodeAccountClaims(enc)
	require.NoError(t, err)
	assert.Equal(t, AccountName, ac.Name)
	assert.True(t, ac.IsClaimRevoked(&jwt.UserClaims{ClaimsData: jwt.ClaimsData{Subject: list[1].Key, IssuedAt: time.Now().Unix()}}), "agent-1 revoked")
	assert.False(t, ac.IsClaimRevoked(uc), "Agent-1 is another id")
	assert.True(t, ac.Limits.JetStreamLimits.DiskStorage < 0, "JetStream without limits")

	// Added again after the revoke: a new key, valid.
	_, again, err := a.Add("agent-1", RoleAgent, nil)
	require.NoError(t, err)
	enc, err = a.AccountJWT()
	require.NoError(t, err)
	assert.NotContains(t, mustAccount(t, enc).Revocations, again.Key)
	assert.Contains(t, mustAccount(t, enc).Revocations, list[1].Key)

	op, err := a.Operator()
	require.NoError(t, err)
	assert.Equal(t, a.SystemAccountKey(), op.SystemAccount)
	assert.Equal(t, op.Subject, ac.Issuer, "the operator signs the account")
	sys, err := a.SystemAccountJWT()
	require.NoError(t, err)
	sc, err := jwt.DecodeAccountClaims(sys)
	require.NoError(t, err)
	assert.Equal(t, a.SystemAccountKey(), sc.Subject)

	ij, ikp, err := a.Internal("codi2", nil)
	require.NoError(t, err)
	ic, err := jwt.DecodeUserClaims(ij)
	require.NoError(t, err)
	ipub, _ := ikp.PublicKey()
	assert.Equal(t, ipub, ic.Subject)
	list, err = a.List()
	require.NoError(t, err)
	assert.Len(t, list, 4, "internal identities are not in the registry")
}

func TestAuthority_Add_Refused(t *testing.T) {
	a, err := Open(t.TempDir())
	require.NoError(t, err)
	_, _, err = a.Add("agent-1", "root", nil)
	require.ErrorIs(t, err, ErrBadRole)
	_, _, err = a.Add("agent-1", RoleInternal, nil)
	require.ErrorIs(t, err, ErrBadRole, "internal identities are never issued to a file")
	for _, id := range []string{"", "a.b", "all", "a b", "a>"} {
		_, _, err = a.Add(id, RoleAgent, nil)
		require.ErrorIs(t, err, ErrBadID, id)
	}
	list, err := a.List()
	require.NoError(t, err)
	assert.Empty(t, list)
}

func TestParseRole(t *testing.T) {
	for _, r := range []string{"agent", "observer", "admin"} {
		got, err := ParseRole(r)
		require.NoError(t, err)
		assert.Equal(t, Role(r), got)
	}
	_, err := ParseRole("internal")
	require.ErrorIs(t, err, ErrBadRole)
}

// Refresh sees a revocation written by another Authority on the same
// directory (another process: `codi2 agent revoke`).
func TestAuthority_Refresh_SeesOtherWriters(t *testing.T) {
	dir := t.TempDir()
	server, err := Open(dir)
	require.NoError(t, err)
	cli, err := Open(dir)
	require.NoError(t, err)
	_, ag, err := cli.Add("agent-1", RoleAgent, nil)
	require.NoError(t, err)
	changed, err := server.Refresh()
	require.NoError(t, err)
	assert.True(t, changed)
	changed, err = server.Refresh()
	require.NoError(t, err)
	assert.False(t, changed, "nothing new")
	_, err = cli.Revoke("agent-1")
	require.NoError(t, err)
	changed, err = server.Refresh()
	require.NoError(t, err)
	assert.True(t, changed)
	enc, err := server.AccountJWT()
	require.NoError(t, err)
	assert.Contains(t, mustAccount(t, enc).Revocations, ag.Key)

	require.NoError(t, os.WriteFile(filepath.Join(dir, registryFile), []byte("{broken"), 0o600))
	_, err = server.Refresh()
	require.ErrorIs(t, err, ErrStore)
	_, err = server.List()
	require.ErrorIs(t, err, ErrStore)
	_, _, err = server.Add("agent-2", RoleAgent, nil)
	require.ErrorIs(t, err, ErrStore, "a broken registry is not overwritten")
}

func mustAccount(t *testing.T, enc string) *jwt.AccountClaims {
	t.Helper()
	ac, err := jwt.DecodeAccountClaims(enc)
	require.NoError(t, err)
	return ac
}

// Concurrent `codi2 agent add` commands lose nothing.
func TestAuthority_Add_Concurrent(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			a, err := Open(dir)
			if !assert.NoError(t, err) {
				return
			}
			_, _, err = a.Add("agent-"+strings.Repeat("x", i+1), RoleAgent, nil)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	a, err := Open(dir)
	require.NoError(t, err)
	list, err := a.List()
	require.NoError(t, err)
	assert.Len(t, list, 8)
}

func TestDecodeRegistry(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"empty object", `{}`, false},
		{"one", `{"agents":[{"id":"a","role":"agent","key":"` + pub + `","issued_at":"2026-11-30T00:00:00Z"}]}`, false},
		{"bad key", `{"agents":[{"id":"a","role":"agent","key":"nope"}]}`, true},
		{"not json", `nope`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeRegistry([]byte(tt.in))
			if tt.wantErr {
				require.ErrorIs(t, err, ErrStore)
			} else {
				require.NoError(t, err)
			}
		})
	}
}

func TestWriteFileAtomic_Fails(t *testing.T) {
	err := writeFileAtomic(filepath.Join(t.TempDir(), "no", "such", "file"), nil)
	require.ErrorIs(t, err, ErrStore)
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "target"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "target", "x"), nil, 0o600))
	err = writeFileAtomic(filepath.Join(dir, "target"), []byte("x"))
	require.ErrorIs(t, err, ErrStore, "cannot replace a non-empty directory")
}

// FuzzDecodeRegistry: any bytes in agents.json decode or fail with
// ErrStore, never panic; what decodes holds only valid user keys.
func FuzzDecodeRegistry(f *testing.F) {
	f.Add([]byte(`{"agents":[]}`))
	f.Add([]byte(`{"agents":[{"id":"a","role":"agent","key":"UA42FBVW4P3ODP3CNDMYWGHKQOFZHMANJHO7CM2FKK2XOPZLCCFBJNAH","issued_at":"2026-11-30T16:07:54Z","revoked_at":"2026-11-30T16:07:54.1Z"}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRegistry(data)
		if err != nil {
			require.ErrorIs(t, err, ErrStore)
			return
		}
		for _, ag := range r.Agents {
			require.True(t, nkeys.IsValidPublicUserKey(ag.Key))
		}
	})
}

func TestAuthority_ServerConfig(t *testing.T) {
	a, err := Open(t.TempDir())
	require.NoError(t, err)
	_, ag, err := a.Add("agent-1", RoleAgent, nil)
	require.NoError(t, err)
	_, err = a.Revoke("agent-1")
	require.NoError(t, err)
	conf, err := a.ServerConfig()
	require.NoError(t, err)
	op, err := a.OperatorJWT()
	require.NoError(t, err)
	assert.Contains(t, conf, "operator: "+op+"\n")
	assert.Contains(t, conf, "system_account: "+a.SystemAccountKey()+"\n")
	assert.Contains(t, conf, "resolver: MEMORY\n")
	var accJWT string
	for _, line := range strings.Split(conf, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ": "); ok && k == a.AccountKey() {
			accJWT = v
		}
	}
	require.NotEmpty(t, accJWT)
	assert.Contains(t, mustAccount(t, accJWT).Revocations, ag.Key, "revocations go to the external server")
	for _, f := range []string{operatorFile, accountFile, systemFile} {
		seed, err := os.ReadFile(filepath.Join(a.Dir(), f))
		require.NoError(t, err)
		assert.NotContains(t, conf, strings.TrimSpace(string(seed)), "no seed in the server's configuration")
	}
	require.NoError(t, os.WriteFile(filepath.Join(a.Dir(), registryFile), []byte("{broken"), 0o600))
	_, err = a.ServerConfig()
	require.ErrorIs(t, err, ErrStore)
	r, err := ParseRole("service")
	require.NoError(t, err)
	assert.Equal(t, RoleService, r)
}
