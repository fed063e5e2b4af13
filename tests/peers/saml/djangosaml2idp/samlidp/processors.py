"""The attributes released to the SP: djangosaml2idp's documented extension
point (a BaseProcessor subclass named in the ServiceProvider row)."""
from djangosaml2idp.processors import BaseProcessor


class Processor(BaseProcessor):
    def create_identity(self, user, sp_attribute_mapping):
        return {
            "uid": [user.username],
            "mail": [user.email],
            "eduPersonAffiliation": sorted(g.name for g in user.groups.all()),
            "displayName": [user.get_full_name()],
        }
