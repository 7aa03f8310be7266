"""Segment mappers: each module turns a family of segments into FHIR resources through
`Context.out.add` (see services.gateway.hl7.context), citing the V2-to-FHIR IG map it follows."""
