package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/klauspost/cpuid/v2"

	"github.com/qrelay/qrelay/otp"
)

// versionInfo is what `qrelayctl version` reports.
type versionInfo struct {
	Module    string `json:"module"`
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	CPU       string `json:"cpu"`
	OTPKernel string `json:"otp_kernel"`
}

func runVersion(_ context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error() + "; usage: qrelayctl version [--json]"}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q; usage: qrelayctl version [--json]", fs.Arg(0))}
	}
	v := versionInfo{
		Module:    "github.com/qrelay/qrelay",
		Version:   "(devel)",
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
		CPU:       cpuid.CPU.BrandName,
		OTPKernel: otp.Impl(),
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.Revision = s.Value
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	fmt.Fprintf(stdout, "qrelay %s", v.Version)
	if v.Revision != "" {
		fmt.Fprintf(stdout, " (%s)", v.Revision)
	}
	fmt.Fprintf(stdout, "\n%s, %s\ncpu: %s\notp kernel: %s (set %s=generic|avx2|avx512 to force one)\n",
		v.GoVersion, v.Platform, v.CPU, v.OTPKernel, otp.EnvKernel)
	return nil
}
