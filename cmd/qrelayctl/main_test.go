package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/otp"
)

func TestVersionJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := dispatch(context.Background(), []string{"version", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	var v versionInfo
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("version --json printed %q: %v", out.String(), err)
	}
	if v.OTPKernel != otp.Impl() || v.GoVersion == "" || v.Platform == "" {
		t.Fatalf("version --json = %+v; want otp_kernel %q and go_version, platform set", v, otp.Impl())
	}
}

func TestVersionText(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := dispatch(context.Background(), []string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if !strings.Contains(out.String(), "otp kernel: "+otp.Impl()) {
		t.Fatalf("version printed %q; want the otp kernel %q", out.String(), otp.Impl())
	}
}

func TestUsageErrors(t *testing.T) {
	clearEnv(t)
	t.Chdir(t.TempDir()) // no ./pki
	cases := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{nil, 2, "usage: qrelayctl"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"version", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"version", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"--help"}, 0, "version"},
		{[]string{"links", "extra"}, 2, `unexpected argument "extra"; usage: qrelayctl links`},
		{[]string{"status", "--timeout", "0s"}, 2, "--timeout 0s: want a positive duration"},
		{[]string{"status", "--node"}, 2, "flag needs an argument: -node"},
		{[]string{"status", "--node", "http://127.0.0.1:7443"}, 2, "the admin API speaks only HTTPS; use https://127.0.0.1:7443"},
		{[]string{"status", "--node", "https://"}, 2, "is not a URL"},
		{[]string{"status"}, 2, "no operator certificate: pass --cert and --key, set QRELAY_CERT and QRELAY_KEY"},
		{[]string{"status", "--cert", "op.pem", "--key", "op.key"}, 2, "no CA certificate to check the node's with: pass --ca"},
		{[]string{"drain"}, 2, "missing <peer>; usage: qrelayctl drain <peer>"},
		{[]string{"drain", "node-b", "node-c"}, 2, `unexpected argument "node-c"`},
		{[]string{"enable", "node b"}, 2, `peer "node b" is not a node ID`},
		{[]string{"state", "node-b"}, 2, "missing <state>"},
		{[]string{"state", "node-b", "drained"}, 2, `unknown state "drained": want one of in_service, out_of_service, standby, reserved`},
		{[]string{"pki", "--nodes", "a,,b"}, 2, `--nodes: empty item 2 in "a,,b"`},
		{[]string{"pki", "--saes", "s,s"}, 2, `--saes: ID "s" given twice`},
		{[]string{"pki", "--nodes", "a/b"}, 2, `--nodes: ID "a/b": character '/'`},
		{[]string{"pki", "--operator", "a b"}, 2, `--operator "a b"`},
		{[]string{"pki", "--validity", "-1h"}, 2, "--validity -1h0m0s: want a positive duration"},
		{[]string{"pki", "extra"}, 2, `unexpected argument "extra"`},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := dispatch(context.Background(), c.args, &out, &errOut)
		if code != c.code || !strings.Contains(errOut.String(), c.inStderr) {
			t.Errorf("qrelayctl %q: exit %d, stderr %q; want exit %d and stderr containing %q", c.args, code, errOut.String(), c.code, c.inStderr)
		}
	}
}
