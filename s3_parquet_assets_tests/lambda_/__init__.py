"""Tests of the Lambda run path: handler, package, template, Pipes round trip."""
