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
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := dispatch(context.Background(), c.args, &out, &errOut)
		if code != c.code || !strings.Contains(errOut.String(), c.inStderr) {
			t.Errorf("qrelayctl %q: exit %d, stderr %q; want exit %d and stderr containing %q", c.args, code, errOut.String(), c.code, c.inStderr)
		}
	}
}
