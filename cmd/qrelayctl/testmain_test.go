package main

import (
	"context"
	"os"
	"testing"
)

// envRunMain makes the test binary run as qrelayctl itself. The demo
// starts its nodes by running its own executable (os.Executable) with
// "daemon -config FILE"; under `go test` that executable is this test
// binary. A test that starts the demo's nodes sets envRunMain=1 with
// t.Setenv, the nodes inherit it, and TestMain then runs dispatch on their
// arguments instead of the tests.
const envRunMain = "QRELAYCTL_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		os.Exit(dispatch(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
