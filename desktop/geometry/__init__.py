"""Pure helpers of the editor (numpy only, no Qt): hit-testing, reroute, overlap, overlay pixels."""
