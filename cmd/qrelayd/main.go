// Command qrelayd is the qrelay key-manager daemon, one per trusted node.
//
//	qrelayd -config node.yaml          run the node
//	qrelayd -config node.yaml -check   validate the config and exit
//
// It loads one YAML config (validated strictly: an unknown field or a bad
// value stops start-up with the field's path and the reason), takes keys
// from the node's QKD links, relays end-to-end keys over QUIC KM links,
// routes with the link-state control plane, and serves the admin API and
// metrics. SIGTERM or SIGINT stops it cleanly (relays in flight finish or
// are aborted with their keys discarded at both ends, marks are
// persisted, exit status 0); SIGHUP reloads the SAEs and static routes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/node"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// shutdownGrace is how long SIGTERM lets relays in flight finish.
const shutdownGrace = 10 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("qrelayd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the node's YAML config `file` (required)")
	check := fs.Bool("check", false, "validate the config, print it with secrets redacted, and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stderr, "qrelayd", version)
		return 0
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "qrelayd: give the config file with -config; see qrelayd -h")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "qrelayd: %v\n", err)
		return 1
	}
	if *check {
		fmt.Fprintf(stderr, "qrelayd: %s is valid\n%s", *path, cfg.Redacted())
		return 0
	}
	log := newLogger(cfg.Node.Log, stderr)
	n, err := node.New(cfg, node.Options{Logger: log, Version: version})
	if err != nil {
		log.Error("node failed to start", "err", err)
		return 1
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reload(n, *path, log)
			continue
		}
		log.Info("stopping", "signal", sig.String(), "grace", shutdownGrace)
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		err := n.Shutdown(ctx)
		cancel()
		if err != nil {
			return 1
		}
		return 0
	}
	return 0
}

// reload applies what SIGHUP may change: the SAEs and the static routes.
// A config that no longer validates, or that changes anything else, is
// refused and the node runs on unchanged.
func reload(n *node.Node, path string, log *slog.Logger) {
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("SIGHUP: config not reloaded; the node runs on with the old one", "err", err)
		return
	}
	if err := n.Reload(cfg); err != nil {
		var re *node.ReloadError
		if errors.As(err, &re) {
			log.Error("SIGHUP: config not reloaded; restart the node to apply it", "err", err)
			return
		}
		log.Error("SIGHUP: reload failed", "err", err)
		return
	}
	log.Info("SIGHUP: config reloaded", "routes", len(cfg.Routes), "saes", len(cfg.SAEs))
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	switch c.Level {
	case config.LogDebug:
		lvl = slog.LevelDebug
	case config.LogWarn:
		lvl = slog.LevelWarn
	case config.LogError:
		lvl = slog.LevelError
	}
	o := &slog.HandlerOptions{Level: lvl}
	if c.Format == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}
