package otp

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestChooseKernel(t *testing.T) {
	best := supportedKernels()[0]
	if k, err := chooseKernel(""); err != nil || k != best {
		t.Fatalf(`chooseKernel("") = %v, %v; want the best supported kernel %v`, k, err, best)
	}
	if k, err := chooseKernel("generic"); err != nil || k != kernelGeneric {
		t.Fatalf(`chooseKernel("generic") = %v, %v; want generic`, k, err)
	}
	_, err := chooseKernel("sse9")
	if err == nil || !strings.Contains(err.Error(), `QRELAY_OTP="sse9" names no kernel`) || !strings.Contains(err.Error(), "generic") {
		t.Fatalf(`chooseKernel("sse9") error = %v; want one naming the bad value and the choices`, err)
	}
	for k := range numKernels {
		_, err := chooseKernel(k.String())
		if why := unsupported(k); why != "" {
			if err == nil || !strings.Contains(err.Error(), why) {
				t.Errorf("forcing unsupported %s: error = %v; want one saying %q", k, err, why)
			}
		} else if err != nil {
			t.Errorf("forcing supported %s: %v", k, err)
		}
	}
}

// TestEnvSelectsKernel runs this test binary again with QRELAY_OTP set to
// each kernel and checks, in the child, that package initialisation picked
// it; an unknown or unsupported value must stop the child with a message.
func TestEnvSelectsKernel(t *testing.T) {
	if want := os.Getenv("QRELAY_OTP_TEST_CHILD"); want != "" {
		if Impl() != want {
			t.Fatalf("with %s=%s, Impl() = %q", EnvKernel, want, Impl())
		}
		return
	}
	run := func(value string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEnvSelectsKernel$", "-test.count=1")
		cmd.Env = append(os.Environ(), EnvKernel+"="+value, "QRELAY_OTP_TEST_CHILD="+value)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for k := range numKernels {
		out, err := run(k.String())
		if why := unsupported(k); why != "" {
			if err == nil || !strings.Contains(out, why) {
				t.Errorf("%s=%s on a CPU without it: exit %v, output %q; want a failure saying %q", EnvKernel, k, err, out, why)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s=%s: %v\n%s", EnvKernel, k, err, out)
		}
	}
	if out, err := run("bogus"); err == nil || !strings.Contains(out, `names no kernel`) {
		t.Errorf("%s=bogus: exit %v, output %q; want start-up to fail naming the bad value", EnvKernel, err, out)
	}
}

// TestXORKeyInlines keeps the single-key fast paths within the compiler's
// inlining budget: the point of XOR16/32/64 is that they cost no call.
func TestXORKeyInlines(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH; cannot ask the compiler what it inlines")
	}
	out, err := exec.Command(goTool, "build", "-gcflags=-m", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build -gcflags=-m: %v\n%s", err, out)
	}
	for _, fn := range []string{"XOR16", "XOR32", "XOR64"} {
		if !strings.Contains(string(out), "can inline "+fn+"\n") && !strings.Contains(string(out), "can inline "+fn+" ") {
			t.Errorf("the compiler no longer inlines %s; keep it within the inlining budget", fn)
		}
	}
}
