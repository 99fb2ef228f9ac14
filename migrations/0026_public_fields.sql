-- What a unit's QR code shows anyone who scans it (一店一码, issue 17): the unit chooses among
-- its address, its four-colour grade and an emergency contact (a duty phone it gives for the
-- purpose); its name is always shown. Default: address and grade, as before this column.
ALTER TABLE units
    ADD COLUMN public_fields text[] NOT NULL DEFAULT '{address,grade}'
        CHECK (public_fields <@ ARRAY['address', 'grade', 'emergency_contact']),
    ADD COLUMN public_contact text NOT NULL DEFAULT '' CHECK (length(public_contact) <= 200);
