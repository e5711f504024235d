package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateAdmin(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every problem, in order; nil = valid
	}{
		{name: "off", yaml: "admin:\n  listen: 127.0.0.1:5002\n"},
		{name: "the single token", yaml: "admin:\n  token: s3cret\n"},
		{
			name: "named tokens",
			yaml: "admin:\n  tokens:\n    - {name: ci, role: write, tokenFile: /run/secrets/ci}\n    - {name: viewer, role: read, tokenEnv: PORTCULLIS_TOKEN_VIEWER}\n",
		},
		{
			name: "named tokens beside the single one",
			yaml: "admin:\n  tokenFile: /run/secrets/admin\n  tokens:\n    - {name: ci, role: write, tokenFile: /run/secrets/ci}\n",
		},
		{
			name: "token problems",
			yaml: "admin:\n  token: s3cret\n  tokens:\n" +
				"    - {role: write, tokenFile: /a}\n" + // 4
				"    - {name: admin, role: read, tokenFile: /b}\n" + // 5
				"    - {name: ci bot, role: write, tokenEnv: CI}\n" + // 6
				"    - {name: ci, role: admin, tokenEnv: CI}\n" + // 7
				"    - {name: ci, role: read}\n" + // 8
				"    - {name: x, role: read, tokenFile: /x, tokenEnv: X}\n" + // 9
				"    - {name: y, role: read, tokenEnv: 9-LIVES}\n", // 10
			want: []string{
				"p.yaml:4: admin.tokens[0].name: is required",
				`p.yaml:5: admin.tokens[1].name: "admin" is already the name of the single admin.token (or tokenFile, or PORTCULLIS_ADMIN_TOKEN)`,
				`p.yaml:6: admin.tokens[2].name: "ci bot": want letters, digits, '.', '_', '-' or '@', at most 64, starting with a letter or digit`,
				`p.yaml:7: admin.tokens[3].role: must be read or write, not "admin"`,
				`p.yaml:8: admin.tokens[4].name: "ci" is already the name of admin.tokens[3]`,
				"p.yaml:8: admin.tokens[4]: needs tokenFile or tokenEnv",
				"p.yaml:9: admin.tokens[5].tokenEnv: set tokenFile or tokenEnv, not both",
				`p.yaml:10: admin.tokens[6].tokenEnv: "9-LIVES" is not an environment variable name`,
			},
		},
		{
			name: "the name admin is free without the single token",
			yaml: "admin:\n  tokens:\n    - {name: admin, role: write, tokenFile: /a}\n",
		},
		{
			name: "mutual TLS",
			yaml: "admin:\n  tls:\n    cert: a.crt\n    key: a.key\n    clientCA: ca.pem\n    clientRole: none\n    clients:\n" +
				"      - {commonName: ci-runner.acme.internal, name: ci, role: write}\n      - {commonName: alice, role: read}\n",
		},
		{
			name: "TLS problems",
			yaml: "admin:\n  token: s3cret\n  tls:\n    cert: a.crt\n    clientCA: ca.pem\n    clientRole: admin\n    clients:\n" + // 7
				"      - {role: read}\n" + // 8
				"      - {commonName: alice, role: read}\n" + // 9
				"      - {commonName: alice, role: root}\n" + // 10
				"      - {commonName: Alice Smith, role: read}\n", // 11
			want: []string{
				"p.yaml:3: admin.tls: cert and key must be given together",
				`p.yaml:6: admin.tls.clientRole: must be read, write or none, not "admin"`,
				"p.yaml:8: admin.tls.clients[0].commonName: is required",
				`p.yaml:10: admin.tls.clients[2].commonName: "alice" is already mapped by admin.tls.clients[1]`,
				`p.yaml:10: admin.tls.clients[2].role: must be read or write, not "root"`,
				`p.yaml:11: admin.tls.clients[3].commonName: "Alice Smith" is not a valid principal name (letters, digits, '.', '_', '-' or '@', at most 64); set name`,
			},
		},
		{
			name: "clients need a client CA",
			yaml: "admin:\n  token: s3cret\n  tls:\n    cert: a.crt\n    key: a.key\n    clients:\n      - {commonName: alice, role: read}\n",
			want: []string{"p.yaml:6: admin.tls.clients: needs admin.tls.clientCA: without it no client certificate is asked for"},
		},
		{
			name: "a client CA needs TLS",
			yaml: "admin:\n  tls:\n    clientCA: ca.pem\n",
			want: []string{"p.yaml:3: admin.tls.clientCA: needs admin.tls.cert and admin.tls.key: client certificates are verified only over TLS"},
		},
		{
			name: "TLS without any credential",
			yaml: "admin:\n  tls:\n    cert: a.crt\n    key: a.key\n",
			want: []string{"p.yaml:2: admin.tls: set, but the admin API has no credential (admin.tokens, admin.token, admin.tokenFile or admin.tls.clientCA), so it is off"},
		},
		{
			name: "listeners and the single token",
			yaml: "listen: 127.0.0.1:5000\nadmin:\n  listen: 127.0.0.1:5000\n  token: a\n  tokenFile: /b\n",
			want: []string{
				"p.yaml:3: admin.listen: must be its own listener, not 127.0.0.1:5000",
				"p.yaml:5: admin.tokenFile: set token or tokenFile, not both",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			if err := c.Validate(); err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var ce *Error
					if !errors.As(e, &ce) {
						t.Errorf("%v is not an *Error", e)
					}
					got = append(got, e.Error())
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseAdminUnknownField(t *testing.T) {
	_, err := Parse([]byte("admin:\n  tokens:\n    - {name: ci, role: write, tokenFiel: /a}\n"), "p.yaml")
	if err == nil || !strings.Contains(err.Error(), "p.yaml:3") || !strings.Contains(err.Error(), `"tokenFiel"`) {
		t.Errorf("Parse = %v, want an unknown-field error at line 3", err)
	}
}

func TestAdminCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const long, other = "0123456789abcdef0123", "fedcba9876543210fedc"
	ciFile, shortFile, emptyFile, adminFile := write("ci", long+"\n"), write("short", "abc\n"), write("empty", "\n"), write("admin", "legacy\r\n")
	missing := filepath.Join(dir, "missing")
	env := map[string]string{"VIEWER": other, "SAME": long}
	tests := []struct {
		name string
		yaml string
		env  map[string]string // on top of the shared variables
		want []AdminCredential
		err  []string // substrings of the error
	}{
		{
			name: "the single token is a write token named admin",
			yaml: "admin:\n  token: s3\n",
			want: []AdminCredential{{Name: "admin", Role: "write", Token: "s3", Field: "admin.token"}},
		},
		{
			name: "PORTCULLIS_ADMIN_TOKEN is the single token, over its file",
			yaml: "admin:\n  tokenFile: " + adminFile + "\n",
			env:  map[string]string{"PORTCULLIS_ADMIN_TOKEN": "from-env"},
			want: []AdminCredential{{Name: "admin", Role: "write", Token: "from-env", Field: "admin.token"}},
		},
		{
			name: "its file",
			yaml: "admin:\n  tokenFile: " + adminFile + "\n",
			want: []AdminCredential{{Name: "admin", Role: "write", Token: "legacy", Field: "admin.tokenFile"}},
		},
		{
			name: "from a file and the environment",
			yaml: "admin:\n  token: s3\n  tokens:\n    - {name: ci, role: write, tokenFile: " + ciFile + "}\n    - {name: viewer, role: read, tokenEnv: VIEWER}\n",
			want: []AdminCredential{
				{Name: "admin", Role: "write", Token: "s3", Field: "admin.token"},
				{Name: "ci", Role: "write", Token: long, Field: "admin.tokens[0]"},
				{Name: "viewer", Role: "read", Token: other, Field: "admin.tokens[1]"},
			},
		},
		{
			name: "unusable sources",
			yaml: "admin:\n  tokens:\n" +
				"    - {name: a, role: write, tokenFile: " + missing + "}\n" +
				"    - {name: b, role: write, tokenFile: " + emptyFile + "}\n" +
				"    - {name: c, role: write, tokenFile: " + shortFile + "}\n" +
				"    - {name: d, role: read, tokenEnv: UNSET}\n",
			err: []string{
				"p.yaml:3: admin.tokens[0].tokenFile: open " + missing,
				"p.yaml:4: admin.tokens[1].tokenFile: " + emptyFile + " is empty",
				"p.yaml:5: admin.tokens[2]: the token is 3 characters, want at least 16",
				"p.yaml:6: admin.tokens[3].tokenEnv: UNSET is not set or empty",
			},
		},
		{
			name: "one token under two names",
			yaml: "admin:\n  tokens:\n    - {name: ci, role: write, tokenFile: " + ciFile + "}\n    - {name: viewer, role: read, tokenEnv: SAME}\n",
			err:  []string{"p.yaml:4: admin.tokens[1]: holds the same token as admin.tokens[0]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			c.ApplyEnv(func(k string) string {
				if v, ok := tt.env[k]; ok {
					return v
				}
				return env[k]
			})
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			got, err := c.AdminCredentials()
			for _, want := range tt.err {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("AdminCredentials error %v, want it to name %q", err, want)
				}
			}
			if len(tt.err) == 0 && err != nil {
				t.Fatal(err)
			}
			if err != nil && (strings.Contains(err.Error(), long) || strings.Contains(err.Error(), other)) {
				t.Errorf("the error shows a token: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AdminCredentials (-want +got):\n%s", diff)
			}
			if fe := c.CheckFiles(); (fe != nil) != (len(tt.err) > 0) {
				t.Errorf("CheckFiles = %v, AdminCredentials = %v: they must agree", fe, err)
			}
		})
	}
}

func TestCheckFilesAdminTLS(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	c := Default()
	c.Admin.TLS = AdminTLS{Cert: missing, Key: missing, ClientCA: notPEM}
	err := c.CheckFiles()
	for _, want := range []string{"admin.tls.cert: stat " + missing, "admin.tls.key: stat " + missing, "admin.tls.clientCA: " + notPEM + " holds no PEM certificate"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFiles = %v, want it to name %q", err, want)
		}
	}
}
