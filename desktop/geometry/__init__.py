"""Pure helpers of the editor (numpy only, no Qt): hit-testing and overlay pixels (reroute and the overlap policy are document logic: annotation.reroute, annotation.overlap)."""
