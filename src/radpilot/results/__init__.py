"""Results as DICOM (SR TID 1500, SEG, key images, derived series), reports, delivery."""
