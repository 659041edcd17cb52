"""
The REST API and the admin page (docs/rest-api.md): the service is built in
L{wcs.rest.service}, the methods are in L{wcs.rest.api}, the HTTP plumbing
in L{wcs.rest.site}. This package module imports none of them, so that they
can import each other without a cycle through it.
"""
