"""Development tools for ncplib: test runners, distribution checks, the reference environment."""
