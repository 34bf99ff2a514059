package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/qrelay/qrelay/node/adminapi"
)

// Where the commands that talk to a node find it and their credentials:
// a flag, else the environment, else the default (files only if present).
const (
	envNode, defaultNode = "QRELAY_NODE", "https://127.0.0.1:7443"
	envCert, defaultCert = "QRELAY_CERT", "pki/operator.pem"
	envKey, defaultKey   = "QRELAY_KEY", "pki/operator.key"
	envCA, defaultCA     = "QRELAY_CA", "pki/ca.pem"
)

// nodeFlags are the flags of every command that talks to a node's admin API.
type nodeFlags struct {
	node, cert, key, ca string
	json                bool
	timeout             time.Duration
}

func (n *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.node, "node", "", "the node's admin API `URL` (env "+envNode+"; default "+defaultNode+")")
	fs.StringVar(&n.cert, "cert", "", "operator certificate PEM `file` (env "+envCert+"; default ./"+defaultCert+")")
	fs.StringVar(&n.key, "key", "", "operator key PEM `file` (env "+envKey+"; default ./"+defaultKey+")")
	fs.StringVar(&n.ca, "ca", "", "CA certificate PEM `file` the node's certificate chains to (env "+envCA+"; default ./"+defaultCA+")")
	fs.BoolVar(&n.json, "json", false, "print the JSON the node sent, for scripts")
	fs.DurationVar(&n.timeout, "timeout", 10*time.Second, "give up on the node after this long")
}

// pick is a setting's value: the flag's, the environment's, else def; for
// a file, def counts only if it exists.
func pick(flagValue, env, def string, isFile bool) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv(env); v != "" {
		return v
	}
	if isFile {
		if _, err := os.Stat(def); err != nil {
			return ""
		}
	}
	return def
}

// client makes the admin API client the flags describe.
func (n *nodeFlags) client() (*adminapi.Client, error) {
	if n.timeout <= 0 {
		return nil, usageError{fmt.Sprintf("--timeout %v: want a positive duration such as 10s", n.timeout)}
	}
	node := pick(n.node, envNode, defaultNode, false)
	if !strings.Contains(node, "://") {
		node = "https://" + node
	}
	u, err := url.Parse(node)
	if err != nil || u.Host == "" {
		return nil, usageError{fmt.Sprintf("--node %q is not a URL: want one like %s", node, defaultNode)}
	}
	if u.Scheme != "https" {
		return nil, usageError{fmt.Sprintf("--node %q: the admin API speaks only HTTPS; use https://%s", node, u.Host)}
	}
	certFile := pick(n.cert, envCert, defaultCert, true)
	keyFile := pick(n.key, envKey, defaultKey, true)
	caFile := pick(n.ca, envCA, defaultCA, true)
	const makeOne = "; make a lab PKI with `qrelayctl pki --dir pki --nodes ...` or, for an existing CA, an operator certificate with `qrelayctl pki --dir DIR --operator NAME`"
	switch {
	case certFile == "" || keyFile == "":
		return nil, usageError{"no operator certificate: pass --cert and --key, set " + envCert + " and " + envKey + ", or run in a directory with ./" + defaultCert + " and ./" + defaultKey + makeOne}
	case caFile == "":
		return nil, usageError{"no CA certificate to check the node's with: pass --ca, set " + envCA + ", or run in a directory with ./" + defaultCA + makeOne}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the operator certificate %s and key %s: %w", certFile, keyFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("loading the CA certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("loading the CA certificate: %s holds no PEM certificate", caFile)
	}
	return adminapi.NewClient(node, cert, roots), nil
}

// explain adds to an admin API error what the operator can do about it.
func explain(err error) error {
	var e *adminapi.Error
	if !errors.As(err, &e) || e.StatusCode != 0 {
		return err // the node's own message says it
	}
	var (
		unknownCA x509.UnknownAuthorityError
		host      x509.HostnameError
		op        *net.OpError
	)
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%w\n(the node's certificate is not from the CA given by --ca/%s: use the network's ca.pem)", err, envCA)
	case errors.As(err, &host):
		return fmt.Errorf("%w\n(the node's certificate does not name this host: use the address it names in --node, or reissue it with `qrelayctl pki --hosts ... --force`)", err)
	case errors.As(err, &op) && op.Op == "remote error": // a TLS alert from the node
		return fmt.Errorf("%w\n(the node refused the operator certificate: use one issued by the node's CA, --cert/--key or %s/%s)", err, envCert, envKey)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w\n(no answer within --timeout: is the node overloaded, or is %s the wrong address?)", err, e.Node)
	}
	return fmt.Errorf("%w\n(is qrelayd running there with api.admin.listen set? Choose the node with --node or %s)", err, envNode)
}

// parseArgs parses args into fs, flags and positional arguments in any
// order, and checks that there are want positional arguments (names says
// what they are). -h prints the help and returns flag.ErrHelp.
func parseArgs(fs *flag.FlagSet, args []string, usage string, names ...string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error() + "; usage: " + usage}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) > len(names) {
		return nil, usageError{fmt.Sprintf("unexpected argument %q; usage: %s", pos[len(names)], usage)}
	}
	if len(pos) < len(names) {
		return nil, usageError{fmt.Sprintf("missing %s; usage: %s", names[len(pos)], usage)}
	}
	return pos, nil
}

// help prints a command's usage and flags for -h.
func help(w io.Writer, fs *flag.FlagSet, usage, what string) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n\nflags:\n", usage, what)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// writeJSON prints v indented, for --json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// nodeCommand is a command that reads one thing from a node and shows it.
type nodeCommand[T any] struct {
	name, what string
	get        func(*adminapi.Client, context.Context) (T, error)
	show       func(io.Writer, T) error
}

func (c nodeCommand[T]) run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	usage := "qrelayctl " + c.name + " [--json] [--node URL] [--cert FILE --key FILE] [--ca FILE]"
	if _, err := parseArgs(fs, args, usage); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help(stdout, fs, usage, c.what)
			return nil
		}
		return err
	}
	client, err := nf.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, nf.timeout)
	defer cancel()
	v, err := c.get(client, ctx)
	if err != nil {
		return explain(err)
	}
	if nf.json {
		return writeJSON(stdout, v)
	}
	return c.show(stdout, v)
}
