"""Web pieces shared by both sites: one stylesheet and page layout (so the cloud UI and the
Home Console feel like one product without copying each other) and the first-run admin."""
